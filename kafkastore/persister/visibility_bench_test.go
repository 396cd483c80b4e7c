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
// -benchtime=1x; each iteration publishes 1,000 records (200 with -short)
// through a Store without a spool, then as many through a Store with one
// (WithSpool in b.TempDir(); the order alternates between iterations).
// Metrics: p50_ms, p99_ms and max_ms without the spool, spool_p50_ms,
// spool_p99_ms and spool_max_ms with it, the spool's p50 and p99 over
// those without and its p50 minus the other's (a spooled Store returns
// before Kafka has the record, so its records' lag includes the
// publisher's send). Each runs against
// kfake and real Apache Kafka (sub-benchmarks kfake and apache).
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
	n := 1000
	if testing.Short() {
		n = 200
	}
	var lags [2][]time.Duration // without the spool, with it
	for i := range b.N {
		for k := range 2 {
			j := (i + k) % 2
			lags[j] = append(lags[j], visibilityLags(b, br, newPrimary, n, j == 1)...)
		}
	}
	var p50, p99 [2]float64
	for j, prefix := range []string{"", "spool_"} {
		slices.Sort(lags[j])
		pct := func(q float64) float64 {
			return float64(lags[j][int(q*float64(len(lags[j])-1))].Microseconds()) / 1000
		}
		p50[j], p99[j] = pct(0.50), pct(0.99)
		b.ReportMetric(p50[j], prefix+"p50_ms")
		b.ReportMetric(p99[j], prefix+"p99_ms")
		b.ReportMetric(pct(1), prefix+"max_ms")
	}
	// With a fast primary a record is often readable before its Store
	// returns (p50 0 without the spool): the difference says more then.
	b.ReportMetric(p50[1]-p50[0], "p50_spool-nospool_ms")
	if p50[0] > 0 {
		b.ReportMetric(p50[1]/p50[0], "p50_spool/nospool")
	}
	b.ReportMetric(p99[1]/p99[0], "p99_spool/nospool")
}

// visibilityLags publishes n records through a Store, with a spool or
// without, and returns each one's lag from its Store's return until it was
// readable in a fresh primary.
func visibilityLags(b *testing.B, br *kafkatest.Broker, newPrimary func(testing.TB) store.Store, n int, spooled bool) []time.Duration {
	const (
		callers = 4
		rate    = 200 // records per second, all callers together
	)
	topic := kafkatest.Topic(b, "completed-lag")
	br.CreateTopic(b, topic, 4, nil)
	seen := newVisibilityPrimary(newPrimary(b))
	opts := []kafkastore.Option{kafkastore.WithBrokers(br.Addr()), kafkastore.WithTopic(topic), kafkastore.WithLogger(persisterTestLogger())}
	if spooled {
		opts = append(opts, kafkastore.WithSpool(b.TempDir()))
	}
	pub, err := kafkastore.New(memory.New(), opts...)
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
	lags := make([]time.Duration, n)
	for i, id := range ids {
		// A record can be persisted before its Store call has seen
		// Kafka's acknowledgement: readable at return, lag 0.
		lags[i] = max(0, seen.at(id).Sub(returned[i]))
	}
	return lags
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
