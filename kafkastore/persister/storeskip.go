package persister

import (
	"github.com/segmentio/kafka-go"

	"github.com/go-whisk/activationstore/kafkastore"
)

// storeSkipped reports whether a writer marked m with
// kafkastore.HeaderStoreSkip, and why.
func storeSkipped(m *kafka.Message) (reason string, ok bool) {
	for _, h := range m.Headers {
		if h.Key == kafkastore.HeaderStoreSkip {
			return string(h.Value), true
		}
	}
	return "", false
}

// skipMarked settles r without persisting it when its writer marked it
// with kafkastore.HeaderStoreSkip, and reports whether it did.
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
