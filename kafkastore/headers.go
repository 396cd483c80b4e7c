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

func recordHeaders(contentType, namespace, activationID string) []kafka.Header {
	return []kafka.Header{
		{Key: HeaderContentType, Value: []byte(contentType)},
		{Key: HeaderNamespace, Value: []byte(namespace)},
		{Key: HeaderActivationID, Value: []byte(activationID)},
	}
}
