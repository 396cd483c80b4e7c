package persister

import (
	"context"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/go-whisk/activationstore/internal/kafkatest"
	"github.com/go-whisk/activationstore/primary/memory"
	"github.com/go-whisk/activationstore/store"
)

// deleteRecordsBefore deletes the records of topic/partition below offset,
// as retention does, through Kafka's DeleteRecords (kafka-go has no call
// for it).
func deleteRecordsBefore(t testing.TB, b *kafkatest.Broker, topic string, partition int32, offset int64) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(b.Addrs()...))
	if err != nil {
		t.Fatalf("kgo client: %v", err)
	}
	defer cl.Close()
	req := kmsg.NewPtrDeleteRecordsRequest()
	rt := kmsg.NewDeleteRecordsRequestTopic()
	rt.Topic = topic
	rp := kmsg.NewDeleteRecordsRequestTopicPartition()
	rp.Partition, rp.Offset = partition, offset
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	req.TimeoutMillis = 10_000
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	res, err := req.RequestWith(ctx, cl)
	if err != nil {
		t.Fatalf("DeleteRecords %s/%d below %d: %v", topic, partition, offset, err)
	}
	for _, rt := range res.Topics {
		for _, rp := range rt.Partitions {
			if err := kerr.ErrorForCode(rp.ErrorCode); err != nil {
				t.Fatalf("DeleteRecords %s/%d below %d: %v", topic, partition, offset, err)
			}
			if rp.LowWatermark != offset {
				t.Fatalf("DeleteRecords %s/%d: log starts at %d, want %d", topic, partition, rp.LowWatermark, offset)
			}
		}
	}
}

// A persister that comes back after retention deleted records it had not
// persisted counts exactly the offsets it skipped, and persists the rest.
func TestPersisterCountsRecordsLostToRetention(t *testing.T) {
	b := kafkatest.Start(t)
	topic := kafkatest.Topic(t, "completed-others")
	b.CreateTopic(t, topic, 1, nil)
	group := kafkatest.Topic(t, "group")
	primary := memory.New()

	first := produceActivations(t, b, topic, "guest", 10) // offsets 0–9
	p := newTestPersister(t, b, primary, WithTopicPattern(exactTopics(topic)), WithGroupID(group))
	stop := runPersister(t, p)
	waitCommittedToEnd(t, b, group, topic, 1)
	stop()

	later := produceActivations(t, b, topic, "guest", 30) // offsets 10–39
	deleteRecordsBefore(t, b, topic, 0, 25)               // 10–24 never persisted

	p2 := newTestPersister(t, b, primary, WithTopicPattern(exactTopics(topic)), WithGroupID(group))
	runPersister(t, p2)
	waitCommittedToEnd(t, b, group, topic, 1, p2)

	s := p2.Stats()
	if len(s.LostToRetention) != 1 || s.LostToRetention[0] != (RetentionLoss{Topic: topic, Partition: 0, Records: 15}) {
		t.Fatalf("LostToRetention = %+v, want 15 records of %s/0 (offsets 10–24)", s.LostToRetention, topic)
	}
	if s.Persisted != 15 {
		t.Errorf("Persisted = %d, want the 15 records left (offsets 25–39)", s.Persisted)
	}
	var inBuckets int64
	for _, n := range s.RecordAge.Counts {
		inBuckets += n
	}
	if s.RecordAge.Count != s.Persisted || inBuckets != s.Persisted || s.RecordAge.Sum <= 0 {
		t.Errorf("RecordAge %+v: want %d ages observed, in the buckets too, with a positive sum", s.RecordAge, s.Persisted)
	}
	checkAllStored(t, primary, "guest", append(first, later[15:]...))
	if p.Stats().LostToRetention != nil && len(p.Stats().LostToRetention) != 0 {
		t.Errorf("the first persister counted losses %+v, want none", p.Stats().LostToRetention)
	}
}

// A reader that Kafka moves past deleted records while it is reading (the
// persister lags, retention catches up) counts the jump.
func TestPersisterCountsRecordsLostWhileReading(t *testing.T) {
	b := kafkatest.Start(t)
	topic := kafkatest.Topic(t, "completed-others")
	b.CreateTopic(t, topic, 1, nil)
	group := kafkatest.Topic(t, "group")

	// The primary blocks until released, and the in-flight cap holds a
	// handful of records: the reader stops early in the partition.
	gate := make(chan struct{})
	primary := &gatedPrimary{innerStore: memory.New(), gate: gate}
	as := produceActivations(t, b, topic, "guest", 2000)
	p := newTestPersister(t, b, primary, WithTopicPattern(exactTopics(topic)), WithGroupID(group),
		WithMaxInFlightBytes(8<<10), WithBatch(4, 4<<20, 0))
	runPersister(t, p)
	waitUntil(t, 20*time.Second, "the reader to fill its budget", func() bool {
		s := p.Stats()
		return len(s.Partitions) == 1 && s.Partitions[0].InFlight > 0
	})
	read := p.Stats().Partitions[0].InFlight
	deleteRecordsBefore(t, b, topic, 0, 1500)
	close(gate)
	waitCommittedToEnd(t, b, group, topic, 1, p)

	s := p.Stats()
	if len(s.LostToRetention) != 1 || s.LostToRetention[0].Records <= 0 {
		t.Fatalf("LostToRetention = %+v, want a loss on %s/0", s.LostToRetention, topic)
	}
	// Every offset is accounted for: persisted, or counted as lost.
	if got := s.Persisted + s.LostToRetention[0].Records; got != int64(len(as)) {
		t.Errorf("persisted %d + lost %d = %d, want %d (read %d before the deletion)",
			s.Persisted, s.LostToRetention[0].Records, got, len(as), read)
	}
	if s.Persisted < 500 {
		t.Errorf("Persisted = %d, want at least the 500 records above the new log start", s.Persisted)
	}
}

// gatedPrimary holds every write until gate is closed.
type gatedPrimary struct {
	innerStore
	gate <-chan struct{}
}

func (g *gatedPrimary) StoreBatch(ctx context.Context, as []*store.Activation, uc store.UserContext) ([]store.BatchResult, error) {
	select {
	case <-g.gate:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return g.innerStore.(store.BatchStorer).StoreBatch(ctx, as, uc)
}
