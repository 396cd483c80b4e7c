package persister

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/go-whisk/activationstore/codec"
	"github.com/go-whisk/activationstore/internal/activationtest"
	"github.com/go-whisk/activationstore/internal/kafkatest"
	"github.com/go-whisk/activationstore/kafkastore"
	"github.com/go-whisk/activationstore/store"
)

// persisterTestLogger logs to stderr when PERSISTER_TEST_LOG is set
// (debug, info, warn), and discards otherwise.
func persisterTestLogger() *slog.Logger {
	var level slog.Level
	switch os.Getenv("PERSISTER_TEST_LOG") {
	case "":
		return slog.New(slog.DiscardHandler)
	case "debug":
		level = slog.LevelDebug
	case "warn":
		level = slog.LevelWarn
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
}

// fastPersisterOptions are timings fit for tests; later options win.
func fastPersisterOptions(b *kafkatest.Broker, t testing.TB) []Option {
	return []Option{
		kafkastore.WithBrokers(b.Addr()),
		kafkastore.WithLogger(persisterTestLogger()),
		WithGroupID(kafkatest.Topic(t, "group")),
		WithDeadLetterTopic(kafkatest.Topic(t, "dlq")),
		WithGroupTimeouts(3*time.Second, 3*time.Second, 100*time.Millisecond),
		WithTopicRefresh(200 * time.Millisecond),
		WithBatch(500, 4<<20, 5*time.Millisecond),
		WithRetryBackoff(5*time.Millisecond, 50*time.Millisecond),
		WithCommitInterval(100 * time.Millisecond),
		WithDrainTimeout(time.Second),
	}
}

func newTestPersister(t testing.TB, b *kafkatest.Broker, primary store.Store, opts ...Option) *Persister {
	t.Helper()
	p, err := New(primary, append(fastPersisterOptions(b, t), opts...)...)
	if err != nil {
		t.Fatalf("persister.New: %v", err)
	}
	return p
}

// runPersister runs p until the returned stop is called (or the test
// ends); stop checks that Run returned nil.
func runPersister(t testing.TB, p *Persister) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run returned %v after cancel, want nil", err)
				}
			case <-time.After(30 * time.Second):
				t.Errorf("Run did not return within 30s of cancel")
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// waitUntil polls cond until it holds, failing the test after timeout.
func waitUntil(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// resultMessage is what KafkaStore publishes on completed-others.
func resultMessage(t testing.TB, a *store.Activation) []byte {
	t.Helper()
	b, err := codec.MarshalResultMessage(codec.TransactionID{ID: "tid-" + a.ActivationID[:8], Start: a.Start}, a)
	if err != nil {
		t.Fatalf("MarshalResultMessage: %v", err)
	}
	return b
}

// produceValues writes values to topic (spread over its partitions) with acks=all.
func produceValues(t testing.TB, b *kafkatest.Broker, topic string, values ...[]byte) {
	t.Helper()
	tr := &kafka.Transport{MetadataTTL: time.Second}
	defer tr.CloseIdleConnections()
	w := &kafka.Writer{
		Addr:         kafka.TCP(b.Addr()),
		Topic:        topic,
		Transport:    tr,
		Balancer:     &kafka.RoundRobin{},
		RequiredAcks: kafka.RequireAll,
		BatchTimeout: time.Millisecond,
		BatchSize:    1000,
		BatchBytes:   16 << 20,
	}
	defer w.Close()
	msgs := make([]kafka.Message, len(values))
	for i, v := range values {
		msgs[i] = kafka.Message{Value: v}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for len(msgs) > 0 {
		n := min(len(msgs), 1000)
		if err := w.WriteMessages(ctx, msgs[:n]...); err != nil {
			t.Fatalf("produce to %s: %v", topic, err)
		}
		msgs = msgs[n:]
	}
}

// produceActivations publishes n fresh activations as ResultMessages.
func produceActivations(t testing.TB, b *kafkatest.Broker, topic, namespace string, n int) []*store.Activation {
	t.Helper()
	as := make([]*store.Activation, n)
	values := make([][]byte, n)
	for i := range as {
		as[i] = activationtest.New(namespace)
		values[i] = resultMessage(t, as[i])
	}
	produceValues(t, b, topic, values...)
	return as
}

// committedOffsets returns the group's committed offset per partition
// (-1: none). It waits out the coordinator's retriable errors (Apache
// Kafka's group coordinator is not available until the offsets topic is).
func committedOffsets(t testing.TB, b *kafkatest.Broker, group, topic string, partitions int) map[int]int64 {
	t.Helper()
	ids := make([]int, partitions)
	for i := range ids {
		ids[i] = i
	}
	tr := b.Transport()
	defer tr.CloseIdleConnections()
	c := &kafka.Client{Addr: kafka.TCP(b.Addr()), Timeout: 10 * time.Second, Transport: tr}
	deadline := time.Now().Add(20 * time.Second)
	for {
		res, err := c.OffsetFetch(context.Background(), &kafka.OffsetFetchRequest{GroupID: group, Topics: map[string][]int{topic: ids}})
		if err != nil {
			t.Fatalf("OffsetFetch: %v", err)
		}
		out := map[int]int64{}
		var kerr kafka.Error
		switch {
		case errors.Is(res.Error, kafka.GroupIdNotFound):
			return out // nothing committed yet
		case errors.As(res.Error, &kerr) && kerr.Temporary() && time.Now().Before(deadline):
			time.Sleep(50 * time.Millisecond)
			continue
		case res.Error != nil:
			t.Fatalf("OffsetFetch: %v", res.Error)
		}
		for _, p := range res.Topics[topic] {
			if p.Error != nil {
				t.Fatalf("OffsetFetch %s/%d: %v", topic, p.Partition, p.Error)
			}
			out[p.Partition] = p.CommittedOffset
		}
		return out
	}
}

// waitCommittedToEnd waits until the group committed every partition's end.
//
// A persister counts a record's ending once the broker answered the commit
// that covers it: a test reading ps' Stats right after the broker shows
// the offset could see the ending uncounted (it did, on Kafka 3.9.1). So
// it also waits until each of ps has counted every record it read.
func waitCommittedToEnd(t testing.TB, b *kafkatest.Broker, group, topic string, partitions int, ps ...*Persister) {
	t.Helper()
	end, err := b.EndOffsets(context.Background(), topic)
	if err != nil {
		t.Fatalf("EndOffsets: %v", err)
	}
	var got map[int]int64
	waitUntil(t, 20*time.Second, "offsets of "+topic+" committed to the end", func() bool {
		got = committedOffsets(t, b, group, topic, partitions)
		for p, e := range end {
			if got[p] != e {
				return false
			}
		}
		return true
	})
	for i, p := range ps {
		waitUntil(t, 10*time.Second, fmt.Sprintf("persister %d to count every record it read", i), func() bool {
			var s statsSum
			s.add(p.Stats())
			return s.read == s.endings()+s.abandoned
		})
	}
}

// checkAllStored asserts each activation is readable, and that the
// namespace holds exactly len(as) records.
func checkAllStored(t testing.TB, s store.Store, namespace string, as []*store.Activation) {
	t.Helper()
	ctx := context.Background()
	const readers = 8
	errs := make(chan error, readers)
	var wg sync.WaitGroup
	for r := range readers {
		wg.Go(func() {
			for i := r; i < len(as); i += readers {
				a := as[i]
				got, err := s.Get(ctx, a.Namespace, a.ActivationID, store.UserContext{})
				if err != nil {
					errs <- fmt.Errorf("Get %s: %w", a.DocID(), err)
					return
				}
				if string(got.Response.Result) != string(a.Response.Result) || !got.Start.Equal(a.Start) {
					errs <- fmt.Errorf("Get %s: got result %s start %v, want %s %v", a.DocID(), got.Response.Result, got.Start, a.Response.Result, a.Start)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	n, err := s.Count(ctx, store.Query{Namespace: namespace}, store.UserContext{})
	if err != nil {
		t.Fatalf("Count: %v", err)
	}
	if n != len(as) {
		t.Fatalf("Count(%s) = %d, want %d", namespace, n, len(as))
	}
	list, err := s.List(ctx, store.Query{Namespace: namespace, Limit: 5}, store.UserContext{})
	if err != nil || len(list) != min(5, len(as)) {
		t.Fatalf("List(%s, limit 5) = %d records, %v", namespace, len(list), err)
	}
}

// innerStore is an embedded store.Store under a name that does not clash with
// its Store method.
type innerStore = store.Store

// errPrimaryDown stands for a network or 5xx failure of the primary.
var errPrimaryDown = errors.New("test: primary unavailable (transient)")

// faultyPrimary wraps a primary: while failing is set every write fails
// transiently; failIDs fail forever. hideBatch hides StoreBatch (Store
// calls only).
type faultyPrimary struct {
	innerStore
	failing atomic.Bool
	writes  atomic.Int64
	mu      sync.Mutex
	failIDs map[string]bool
}

func (f *faultyPrimary) Store(ctx context.Context, a *store.Activation, uc store.UserContext) (store.DocInfo, error) {
	f.writes.Add(1)
	if err := f.fault(a); err != nil {
		return store.DocInfo{}, err
	}
	return f.innerStore.Store(ctx, a, uc)
}

func (f *faultyPrimary) fault(a *store.Activation) error {
	if f.failing.Load() {
		return errPrimaryDown
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failIDs[a.ActivationID] {
		return fmt.Errorf("%w: %s", errPrimaryDown, a.ActivationID)
	}
	return nil
}

// faultyBatchPrimary adds StoreBatch, failing the whole batch while failing
// is set and single records of failIDs.
type faultyBatchPrimary struct {
	*faultyPrimary
	batch store.BatchStorer
}

func (f *faultyBatchPrimary) StoreBatch(ctx context.Context, as []*store.Activation, uc store.UserContext) ([]store.BatchResult, error) {
	f.writes.Add(1)
	if f.failing.Load() {
		return nil, errPrimaryDown
	}
	var ok []*store.Activation
	var idx []int
	res := make([]store.BatchResult, len(as))
	for i, a := range as {
		if err := f.fault(a); err != nil {
			res[i].Err = err
			continue
		}
		ok = append(ok, a)
		idx = append(idx, i)
	}
	stored, err := f.batch.StoreBatch(ctx, ok, uc)
	if err != nil {
		return nil, err
	}
	for j, r := range stored {
		res[idx[j]] = r
	}
	return res, nil
}
