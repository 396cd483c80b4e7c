package persister

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/go-whisk/activationstore/codec"
	"github.com/go-whisk/activationstore/internal/activationtest"
	"github.com/go-whisk/activationstore/internal/kafkatest"
	"github.com/go-whisk/activationstore/kafkastore"
	"github.com/go-whisk/activationstore/primary/memory"
	"github.com/go-whisk/activationstore/store"
)

// TestPersisterHonoursStoreSkipHeader: records marked kafkastore.HeaderStoreSkip are
// settled without a write, their offsets committed, and counted apart.
func TestPersisterHonoursStoreSkipHeader(t *testing.T) {
	b := kafkatest.Start(t)
	topic := kafkatest.Topic(t, "completed")
	b.CreateTopic(t, topic, 1, nil)

	invoker := codec.InstanceID{Instance: 0, UserMemory: "1024 MB"}
	combined := func(a *store.Activation) []byte {
		v, err := codec.Marshal(codec.NewCombinedMessage(codec.TransactionID{ID: "sid_invoker", Start: a.Start}, a, invoker))
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	skipLevel := []kafka.Header{{Key: kafkastore.HeaderStoreSkip, Value: []byte(kafkastore.StoreSkipLevel)}}
	skipUser := []kafka.Header{{Key: "other", Value: []byte("x")}, {Key: kafkastore.HeaderStoreSkip, Value: []byte(kafkastore.StoreSkipUser)}}
	skippedAck, storedAck := activationtest.New("guest"), activationtest.New("guest")
	skippedResult, storedResult := activationtest.New("guest"), activationtest.New("guest")
	// One partition, so the last record settled means every one before it was.
	msgs := []kafka.Message{
		{Key: []byte(skippedAck.ActivationID), Value: combined(skippedAck), Headers: skipLevel},
		{Key: []byte(storedAck.ActivationID), Value: combined(storedAck)},
		{Key: []byte(skippedResult.ActivationID), Value: resultMessage(t, skippedResult), Headers: skipUser},
		{Key: []byte(storedResult.ActivationID), Value: resultMessage(t, storedResult)},
	}
	w := &kafka.Writer{Addr: kafka.TCP(b.Addr()), Topic: topic, RequiredAcks: kafka.RequireAll, BatchTimeout: time.Millisecond}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// A ZooKeeper-mode broker may still refuse a topic it has just listed
	// (its log is made after its metadata names it): nothing is written
	// then, so sending again adds no record twice.
	for {
		err := w.WriteMessages(ctx, msgs...)
		if err == nil {
			break
		}
		if !unknownTopic(err) || ctx.Err() != nil {
			t.Fatalf("produce: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}

	primary := memory.New()
	group := kafkatest.Topic(t, "group")
	p := newTestPersister(t, b, primary, WithTopicPattern(exactTopics(topic)), WithGroupID(group))
	runPersister(t, p)
	waitCommittedToEnd(t, b, group, topic, 1)

	for _, a := range []*store.Activation{storedAck, storedResult} {
		if _, err := primary.Get(ctx, a.Namespace, a.ActivationID, store.UserContext{}); err != nil {
			t.Errorf("unmarked %s not persisted: %v", a.ActivationID, err)
		}
	}
	for _, a := range []*store.Activation{skippedAck, skippedResult} {
		if _, err := primary.Get(ctx, a.Namespace, a.ActivationID, store.UserContext{}); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("marked %s: Get gave %v, want ErrNotFound", a.ActivationID, err)
		}
	}
	if n := primary.Len(); n != 2 {
		t.Errorf("primary holds %d records, want the 2 unmarked", n)
	}
	s := p.Stats()
	if s.StoreSkipped != 2 || s.Persisted != 2 || s.Skipped != 0 || s.DeadLettered != 0 {
		t.Errorf("stats %+v: want 2 store-skipped, 2 persisted, none skipped or dead-lettered", s)
	}
}

// unknownTopic reports whether a Writer's error is the broker not knowing
// the topic yet, for every message (kafka.WriteErrors has no Unwrap).
func unknownTopic(err error) bool {
	var werrs kafka.WriteErrors
	if !errors.As(err, &werrs) {
		return errors.Is(err, kafka.UnknownTopicOrPartition)
	}
	for _, e := range werrs {
		if e != nil && !errors.Is(e, kafka.UnknownTopicOrPartition) {
			return false
		}
	}
	return true
}
