// Package codec converts between bytes and values for everything an
// OpenWhisk-compatible activation store finds on the wire: the
// WhiskActivation JSON (the serdes form that acknowledgements, Kafka topics
// and CouchDB documents carry, the extended form of API replies, and the
// summary form of the activations views), the CouchDB document, and the
// invokers' acknowledgement messages (ResultMessage, CompletionMessage,
// CombinedCompletionAndResultMessage) with their TransactionId and
// InstanceId.
//
// Decode reads any record found on the topics and says which kind it is:
//
//	m, err := codec.Decode(record.Value)
//	if err != nil { // errors.Is(err, codec.ErrMalformed); errors.As gives *codec.Error
//		deadLetter(record, err)
//	}
//	if a := m.Activation(); a != nil {
//		persist(a)
//	}
//
// # Compatibility
//
// Reading follows spray-json as OpenWhisk uses it: required members are
// required, an optional member that is missing or null is absent, unknown
// members are ignored, and a repeated member overrides the earlier one.
// OpenWhisk's reader checks are applied: namespace (EntityPath), name
// (EntityName), subject (at least 5 characters), activation ids (32
// lowercase hexadecimal characters; a JSON number of 32 digits is accepted
// too), timestamps (epoch milliseconds, fractions truncated, or an ISO-8601
// string) and the semantic version. Values are normalised the way OpenWhisk
// writes them back: "guest//pkg/" becomes "guest/pkg", version "1.02"
// becomes "1.2.0".
//
// The codec reads what OpenWhisk reads and nothing more restrictive. In
// particular, a namespace or name that starts with "_" is a valid OpenWhisk
// EntityName and decodes. The store package accepts such names too, except
// as the first segment of a namespace (store.ValidateNamespace), which
// begins the CouchDB document id, and CouchDB reserves ids starting with
// "_". So the decision to refuse such a record is the store's, with
// store.ErrInvalid. Names and subjects are checked by the same functions as
// the store's (store.ValidateEntityName, store.SubjectLength).
//
// Acknowledgements of both eras decode: the PR #4632 era marks completion
// with the member "invoker", master with "instance"; v1, v2 and v3
// invoker instance ids, controller ids and unknown instance shapes are all
// accepted and kept byte for byte (InstanceID.Raw), so a decoded message
// re-encodes equal. A transid of unexpected shape reads, as in OpenWhisk, as
// the unknown transaction "sid_unknown" instead of failing.
//
// Raw JSON values (the result, annotation values) are kept exactly as read
// (number literals, escapes and member order), only compacted; invalid UTF-8
// becomes U+FFFD everywhere. Annotations keep their order, duplicates
// included (OpenWhisk keeps the last; store.Activation.Annotation does too).
// The zero time.Time stands for epoch 0, which OpenWhisk writes as the end
// of activations that have none (triggers).
//
// Writing produces compact JSON in OpenWhisk's member order. Encoding
// functions do not validate activations (use store.ValidateActivation);
// they fail, with an error matching store.ErrInvalid, only when a value
// cannot be written as valid JSON.
//
// Decoding is a single pass over the input without an intermediate tree;
// each string and raw value is copied out once.
package codec
