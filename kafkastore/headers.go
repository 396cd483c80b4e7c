package kafkastore

import "github.com/segmentio/kafka-go"

// Record headers set by Store on every record it publishes. Consumers
// need none of them: the value alone is decodable (codec.Decode), and the
// records OpenWhisk's invokers put on completed<N> carry no headers. They
// let operators and tools (kcat -J, dead-letter inspection) see what a
// record is without parsing it.
const (
	// HeaderContentType names the format of the value: ContentTypeResultMessage
	// or ContentTypeActivation.
	HeaderContentType = "content-type"
	// HeaderNamespace is the activation's namespace ("guest", "guest/pkg").
	HeaderNamespace = "namespace"
	// HeaderActivationID is the activation id, also the record key.
	HeaderActivationID = "activation-id"
)

// Values of HeaderContentType.
const (
	// ContentTypeResultMessage: an OpenWhisk ResultMessage
	// {"transid":[…],"response":{activation}}, as on completed* topics.
	ContentTypeResultMessage = "application/vnd.openwhisk.result-message+json"
	// ContentTypeActivation: the WhiskActivation JSON itself, logs
	// included, as on the activations topic.
	ContentTypeActivation = "application/vnd.openwhisk.activation+json"
)

// HeaderStoreSkip marks a record whose activation must not be persisted.
//
// An invoker acks a blocking activation with a
// CombinedCompletionAndResultMessage that carries the activation: the
// controller needs it to answer the caller. When OpenWhisk's storeAfterCheck
// decides against storing that activation (store level
// store-blocking-result-level, or the user's storeActivations=false), the
// ack must still carry it, so the decision travels beside the JSON, in
// this header, which Scala controllers never look at. The persister
// (package kafkastore/persister) settles such a record without writing
// it, commits its offset like any other, and counts it in
// persister.Stats.StoreSkipped.
//
// The header's presence is what counts; its value says why, for operators
// (StoreSkipLevel, StoreSkipUser). Writers other than Store set it; Store
// itself publishes only what its caller decided to store.
const HeaderStoreSkip = "activation-store-skip"

// Values of HeaderStoreSkip.
const (
	// StoreSkipLevel: the store level of the activation's blocking-ness
	// does not admit its status (e.g. STORE_FAILURES and a success).
	StoreSkipLevel = "store-level"
	// StoreSkipUser: the user's storeActivations limit is false.
	StoreSkipUser = "store-activations-false"
)

func recordHeaders(contentType, namespace, activationID string) []kafka.Header {
	return []kafka.Header{
		{Key: HeaderContentType, Value: []byte(contentType)},
		{Key: HeaderNamespace, Value: []byte(namespace)},
		{Key: HeaderActivationID, Value: []byte(activationID)},
	}
}
