package kafkastore

import "github.com/segmentio/kafka-go"

// HeaderStoreSkip marks a record whose activation must not be persisted.
//
// An invoker acks a blocking activation with a
// CombinedCompletionAndResultMessage that carries the activation: the
// controller needs it to answer the caller. When OpenWhisk's storeAfterCheck
// decides against storing that activation (store level
// store-blocking-result-level, or the user's storeActivations=false), the
// ack must still carry it, so the decision travels beside the JSON, in
// this header, which Scala controllers never look at. The Persister
// settles such a record without writing it, commits its offset like any
// other, and counts it in PersisterStats.StoreSkipped.
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

// storeSkipped reports whether a writer marked m with HeaderStoreSkip, and
// why.
func storeSkipped(m *kafka.Message) (reason string, ok bool) {
	for _, h := range m.Headers {
		if h.Key == HeaderStoreSkip {
			return string(h.Value), true
		}
	}
	return "", false
}

// skipMarked settles r without persisting it when its writer marked it
// with HeaderStoreSkip, and reports whether it did.
func (g *persistGeneration) skipMarked(r *persistRecord) bool {
	reason, ok := storeSkipped(&r.msg)
	if !ok {
		return false
	}
	g.p.log.Debug("persister skips a record its writer marked not to store",
		"reason", reason, "key", string(r.msg.Key),
		"topic", r.msg.Topic, "partition", r.msg.Partition, "offset", r.msg.Offset)
	g.settle(r, endStoreSkipped)
	return true
}
