package losstest

import (
	"context"
	"net/http"
	"regexp"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/go-whisk/activationstore/internal/couchtest"
	"github.com/go-whisk/activationstore/internal/kafkatest"
	"github.com/go-whisk/activationstore/kafkastore"
	"github.com/go-whisk/activationstore/kafkastore/persister"
	"github.com/go-whisk/activationstore/primary/couchdb"
	"github.com/go-whisk/activationstore/store"
)

// After Store.Close and after Run returns — once at the end of a drain,
// once cancelled in the middle of one — no goroutine of the store, the
// persister, kafka-go or the CouchDB client is left.
func TestNoGoroutineLeft(t *testing.T) {
	couchURL := couchtest.URL(t) // the shared server's goroutines predate the snapshot
	snapshot := goleak.IgnoreCurrent()
	var leaked atomic.Bool
	// Registered first, so run last: after the broker is closed.
	t.Cleanup(func() {
		if err := goleak.Find(snapshot); err != nil {
			leaked.Store(true)
			t.Errorf("goroutines left after the store, the persisters and the broker stopped: %v", err)
		}
	})
	// Runs second to last: couchtest's cleanup deletes the test database
	// through http.DefaultClient, which dials anew when its connections
	// idled out (90 s, as after a long test): not the persister's.
	t.Cleanup(http.DefaultClient.CloseIdleConnections)
	before := runtime.NumGoroutine()

	const n, partitions = 3000, 4
	b := kafkatest.Start(t)
	topic := kafkatest.Topic(t, "completed-others")
	ctx := context.Background()
	primary, err := couchdb.New(ctx, couchURL, couchtest.DBName(t))
	if err != nil {
		t.Fatalf("couchdb.New: %v", err)
	}
	ks, err := kafkastore.New(primary, kafkastore.WithBrokers(b.Addr()), kafkastore.WithTopic(topic),
		kafkastore.WithTopicPartitions(partitions), kafkastore.WithLinger(time.Millisecond))
	if err != nil {
		t.Fatalf("kafkastore.New: %v", err)
	}
	run := NewRun()
	var wg sync.WaitGroup
	for c := range 16 {
		wg.Go(func() {
			for i := c; i < n; i += 16 {
				if _, err := ks.Store(ctx, Activation(run, i), store.UserContext{}); err != nil {
					t.Errorf("KafkaStore.Store: %v", err)
					return
				}
			}
		})
	}
	wg.Wait()
	if err := ks.Close(); err != nil {
		t.Errorf("KafkaStore.Close: %v", err)
	}
	afterStore := runtime.NumGoroutine()

	persist := func(group string, until func(*persister.Persister) bool) *persister.Persister {
		p, err := persister.New(primary,
			kafkastore.WithBrokers(b.Addr()),
			persister.WithGroupID(group),
			persister.WithTopicPattern(regexp.MustCompile("^"+regexp.QuoteMeta(topic)+"$")),
			persister.WithDeadLetterTopic(kafkatest.Topic(t, "dlq")),
			persister.WithGroupTimeouts(6*time.Second, 6*time.Second, 500*time.Millisecond),
			persister.WithBatch(100, 4<<20, 10*time.Millisecond),
			persister.WithDrainTimeout(time.Second),
		)
		if err != nil {
			t.Fatalf("persister.New: %v", err)
		}
		rctx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- p.Run(rctx) }()
		waitFor(t, time.Minute, "the persister's progress", func() bool { return until(p) })
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("Run did not return within 30 s of cancel")
		}
		return p
	}
	// Cancelled in the middle of the drain, with writes in flight.
	mid := persist(kafkatest.Topic(t, "group"), func(p *persister.Persister) bool { return p.Stats().Persisted > 0 })
	// A whole drain in a group of its own.
	full := persist(kafkatest.Topic(t, "group"), func(p *persister.Persister) bool {
		s := p.Stats()
		return s.Persisted+s.Conflicts >= n
	})
	if err := primary.Close(); err != nil {
		t.Errorf("couchdb Close: %v", err)
	}
	afterRun := runtime.NumGoroutine()
	// Checked while the broker still runs, too: a goroutine blocked on a
	// broker connection would be freed by the broker's close and escape
	// the final check.
	if err := goleak.Find(snapshot,
		goleak.IgnoreTopFunction("github.com/twmb/franz-go/pkg/kfake.(*Cluster).run"),
		goleak.IgnoreAnyFunction("github.com/twmb/franz-go/pkg/kfake.(*broker).listen")); err != nil {
		leaked.Store(true)
		t.Errorf("goroutines left after Store.Close and Run returned, broker still up: %v", err)
	}
	t.Cleanup(func() {
		t.Logf("SUMMARY %s: goroutines before=%d after Store.Close=%d after 2 Runs (mid-drain cancel persisted %d; full drain persisted %d, conflicts %d)=%d; leaked after broker close=%v",
			t.Name(), before, afterStore, mid.Stats().Persisted, full.Stats().Persisted, full.Stats().Conflicts, afterRun, leaked.Load())
	})
}
