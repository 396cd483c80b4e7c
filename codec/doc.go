// Package codec converts between bytes and values for every form of an
// OpenWhisk activation an activation store meets, one pair of entry points
// per form:
//
//   - Decode and Marshal: any record on the topics (ResultMessage,
//     CompletionMessage, CombinedMessage, ActivationRecord) with its
//     TransactionID and InstanceID; MarshalResultMessage for the common case;
//   - MarshalActivation, UnmarshalActivation: WhiskActivation's serdes form;
//   - MarshalExtended, UnmarshalExtended: the form of API replies;
//   - MarshalSummary, UnmarshalSummary: the activations views' values;
//   - MarshalResponse, UnmarshalResponse: an ActivationResponse;
//   - MarshalDocument, UnmarshalDocument: the CouchDB document;
//   - MarshalElasticsearchDocument, UnmarshalElasticsearchDocument: the
//     document of OpenWhisk's ElasticSearchActivationStore, whose "path"
//     is ElasticsearchPath.
//
// Every form is written with one string escaper, by spray-json's rules.
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
// The authority is OpenWhisk's Scala code (master 1fae641 and the PR #4632
// era 71ad373) with spray-json 1.3.5, which both eras use. The rule: a Go
// controller or invoker accepts every activation a Scala one accepts,
// normalising it the same way, and refuses what a Scala one would misread;
// a Go persister reads every record a Scala OpenWhisk can write; and
// nothing this package writes is read by OpenWhisk as another value, or
// not at all. testdata/interop holds one golden vector per rule and era:
// the input, what OpenWhisk makes of it, and what this package writes.
//
// Reading follows spray-json as OpenWhisk uses it: required members are
// required, an optional member that is missing or null is absent, unknown
// members are ignored, and a repeated member overrides the earlier one.
// OpenWhisk's reader checks are applied: namespace (EntityPath), name
// (EntityName), subject (at least 5 characters once trimmed), activation
// ids (32 lowercase hexadecimal characters; a JSON number of 32 digits is
// accepted too), timestamps (epoch milliseconds or an ISO-8601 string) and
// the semantic version. Values are normalised the way OpenWhisk holds and
// writes them back:
//
//   - the subject is trimmed as Java's String.trim trims (every leading and
//     trailing character up to U+0020) before its length is checked:
//     "  guest " is "guest", " abc " is refused. EntityPath, EntityName and
//     Namespace are not trimmed by OpenWhisk, nor here;
//   - "guest//pkg/" is "guest/pkg", version "1.02" is "1.2.0";
//   - Scala Int members (response.size, statusCode, an invoker's instance
//     number) and Long members (duration, start, end, a transid's start)
//     are read as BigDecimal.intValue and longValue read them: a fraction
//     truncates, and only the low 32 or 64 bits remain (size 2147484011
//     is -2147483285, instance 4294967299 is 3);
//   - every epoch millisecond value is itself: -62135596800000 is the zero
//     time.Time (year 1), and only 0, store.NoEnd, is "no end".
//
// Writing produces compact JSON in OpenWhisk's member order, with the
// subject trimmed and the version normalised (store.Normalize), and
// U+FFFF written as the escape \uffff: spray-json's parser takes a raw
// U+FFFF as the end of input (it is the only character it cannot take
// raw, besides those JSON requires escaped). Writers refuse, with an
// *store.InvalidError naming the member (matching store.ErrInvalid), what
// OpenWhisk would misread or could not read: an Int member outside
// -2^31..2^31-1, and a raw value (result, annotation value, instance id
// kept as read) holding a number spray-json cannot parse (longer than 100
// characters, or whose BigDecimal exponent or scale is not an int, such as
// 1e2147483648: store.NumberProblem) or nested deeper than
// store.MaxRawNesting. store.ValidateActivation refuses the same, so that
// whatever it accepts is written, and read back as store.Normalize gives
// it. The reader reads such numbers (kept verbatim), so that the record is
// decoded and refused with a clear error when it is stored or written,
// rather than dropped as unreadable. Writers do not otherwise validate
// activations (use store.ValidateActivation).
//
// The codec reads what OpenWhisk reads. A namespace or name that starts
// with "_" is a valid OpenWhisk EntityName and decodes; the store package
// refuses it only as the first segment of a namespace, which begins the
// CouchDB document id (CouchDB reserves ids starting with "_"). Names and
// subjects are checked by the same functions as the store's.
//
// Acknowledgements of both eras decode: the PR #4632 era marks completion
// with the member "invoker", master with "instance"; v1, v2 and v3
// invoker instance ids, controller ids and unknown instance shapes are all
// accepted and kept byte for byte (InstanceID.Raw), so a decoded message
// re-encodes equal (an invoker id whose instance number wrapped is
// written with the number OpenWhisk read). A transid of unexpected shape
// reads, as in OpenWhisk, as the unknown transaction "sid_unknown" instead
// of failing. At EraPR a transid is written without its parent, which a
// PR-era controller would read as "sid_unknown".
//
// Raw JSON values (the result, annotation values) are kept exactly as read
// (number literals, escapes and member order), only compacted; invalid UTF-8
// becomes U+FFFD everywhere. Annotations keep their order, duplicates
// included (OpenWhisk keeps the last; store.Activation.Annotation does too).
//
// # Deliberate differences
//
// Where this package is stricter or looser than OpenWhisk on purpose (a
// namespace starting with "_", versions it normalises or refuses, numbers
// spray-json cannot parse, U+FFFF, lone surrogates, repeated annotation
// keys, and more), the README's "codec" section has the table: what
// OpenWhisk does, and what happens here. testdata/interop pins each row.
//
// Decoding is a single pass over the input without an intermediate tree;
// each string and raw value is copied out once.
package codec
