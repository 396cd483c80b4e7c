package persister

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/go-whisk/activationstore/internal/activationtest"
	"github.com/go-whisk/activationstore/internal/couchtest"
	"github.com/go-whisk/activationstore/internal/kafkatest"
	"github.com/go-whisk/activationstore/kafkastore"
	"github.com/go-whisk/activationstore/primary/couchdb"
	"github.com/go-whisk/activationstore/primary/memory"
	"github.com/go-whisk/activationstore/store"
)

// BenchmarkVisibilityLag measures what a user running `wsk activation get`
// right after a non-blocking invoke sees: the time from Store returning
// until the record is readable in the primary, at a steady 200 records/s
// from 4 callers, with a persister on default batching. Run with
// -benchtime=1x; each iteration publishes 1,000 records (200 with -short).
// Each runs against kfake and real Apache Kafka (sub-benchmarks kfake and
// apache).
//
// The primary is wrapped so that the moment a write returns is taken as the
// moment the record became readable, without polling that would load the
// machine.
func BenchmarkVisibilityLag(b *testing.B) {
	b.Run("memory", func(b *testing.B) {
		kafkatest.RunBrokers(b, func(b *testing.B, br *kafkatest.Broker) {
			benchVisibilityLag(b, br, func(testing.TB) store.Store { return memory.New() })
		})
	})
	b.Run("couchdb", func(b *testing.B) {
		kafkatest.RunBrokers(b, func(b *testing.B, br *kafkatest.Broker) { benchVisibilityLag(b, br, couchPrimary) })
	})
}

// couchPrimary is a CouchDB primary on a database of t's own, dropped when
// t ends.
func couchPrimary(t testing.TB) store.Store {
	base, db := couchtest.URL(t), couchtest.DBName(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := couchdb.New(ctx, base, db)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = couchtest.DeleteDB(context.Background(), base, db) })
	return c
}

func benchVisibilityLag(b *testing.B, br *kafkatest.Broker, newPrimary func(testing.TB) store.Store) {
	const (
		callers = 4
		rate    = 200 // records per second, all callers together
	)
	n := 1000
	if testing.Short() {
		n = 200
	}
	var lags []time.Duration
	for range b.N {
		topic := kafkatest.Topic(b, "completed-lag")
		br.CreateTopic(b, topic, 4, nil)
		seen := newVisibilityPrimary(newPrimary(b))
		pub, err := kafkastore.New(memory.New(), kafkastore.WithBrokers(br.Addr()), kafkastore.WithTopic(topic), kafkastore.WithLogger(persisterTestLogger()))
		if err != nil {
			b.Fatal(err)
		}
		p, err := New(seen,
			kafkastore.WithBrokers(br.Addr()),
			kafkastore.WithLogger(persisterTestLogger()),
			WithGroupID(kafkatest.Topic(b, "lag")),
			WithDeadLetterTopic(kafkatest.Topic(b, "dlq")),
			WithTopicPattern(exactTopics(topic)),
			WithGroupTimeouts(3*time.Second, 3*time.Second, 100*time.Millisecond))
		if err != nil {
			b.Fatal(err)
		}
		stop := runPersister(b, p)
		waitUntil(b, 30*time.Second, "the persister to join", func() bool { return len(p.Stats().Partitions) == 4 })

		returned := make([]time.Time, n)
		ids := make([]string, n)
		var wg sync.WaitGroup
		interval := time.Second * callers / rate
		for c := range callers {
			wg.Go(func() {
				tick := time.NewTicker(interval)
				defer tick.Stop()
				for i := c; i < n; i += callers {
					<-tick.C
					a := activationtest.New("guest")
					ids[i] = a.ActivationID
					if _, err := pub.Store(context.Background(), a, store.UserContext{}); err != nil {
						b.Error(err)
						return
					}
					returned[i] = time.Now()
				}
			})
		}
		wg.Wait()
		waitUntil(b, time.Minute, "every record persisted", func() bool { return seen.count() >= n })
		stop()
		if err := pub.Close(); err != nil {
			b.Fatal(err)
		}
		for i, id := range ids {
			// A record can be persisted before its Store call has seen
			// Kafka's acknowledgement: readable at return, lag 0.
			lags = append(lags, max(0, seen.at(id).Sub(returned[i])))
		}
	}
	slices.Sort(lags)
	pct := func(q float64) float64 {
		return float64(lags[int(q*float64(len(lags)-1))].Microseconds()) / 1000
	}
	b.ReportMetric(pct(0.50), "p50_ms")
	b.ReportMetric(pct(0.99), "p99_ms")
	b.ReportMetric(pct(1), "max_ms")
}

// visibilityPrimary notes when each activation's write returned.
type visibilityPrimary struct {
	innerStore
	batch store.BatchStorer

	mu   sync.Mutex
	seen map[string]time.Time
}

func newVisibilityPrimary(s store.Store) *visibilityPrimary {
	v := &visibilityPrimary{innerStore: s, seen: map[string]time.Time{}}
	v.batch, _ = s.(store.BatchStorer)
	return v
}

func (v *visibilityPrimary) StoreBatch(ctx context.Context, as []*store.Activation, uc store.UserContext) ([]store.BatchResult, error) {
	var res []store.BatchResult
	var err error
	if v.batch != nil {
		res, err = v.batch.StoreBatch(ctx, as, uc)
	} else {
		res = make([]store.BatchResult, len(as))
		for i, a := range as {
			res[i].DocInfo, res[i].Err = v.innerStore.Store(ctx, a, uc)
		}
	}
	now := time.Now()
	v.mu.Lock()
	defer v.mu.Unlock()
	for i, a := range as {
		if err == nil && i < len(res) && res[i].Err == nil {
			if _, ok := v.seen[a.ActivationID]; !ok {
				v.seen[a.ActivationID] = now
			}
		}
	}
	return res, err
}

func (v *visibilityPrimary) count() int {
	v.mu.Lock()
	defer v.mu.Unlock()
	return len(v.seen)
}

func (v *visibilityPrimary) at(id string) time.Time {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.seen[id]
}
