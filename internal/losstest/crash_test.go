package losstest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-whisk/activationstore/internal/couchtest"
	"github.com/go-whisk/activationstore/internal/kafkatest"
	"github.com/go-whisk/activationstore/internal/servicetest"
	"github.com/go-whisk/activationstore/internal/testvolume"
	"github.com/go-whisk/activationstore/primary/couchdb"
)

// The persister service is killed with SIGKILL three times at random
// points of a drain into CouchDB and restarted each time: every
// activation ends up in the database exactly once.
func TestCrashLosesNothing(t *testing.T) {
	n, partitions, kills := testvolume.Pick(10_000, 20_000, 100_000), 8, 3
	seed := uint64(time.Now().UnixNano())
	rng := rand.New(rand.NewPCG(seed, seed>>7))
	t.Logf("seed %d", seed)

	b := kafkatest.Start(t)
	topic := kafkatest.Topic(t, "completed")
	b.CreateTopic(t, topic, partitions, nil)
	couchURL, db := couchtest.URL(t), couchtest.DBName(t)
	bin := servicetest.Build(t, false)

	run := NewRun()
	start := time.Now()
	Produce(t, b.Addr(), topic, Records(t, run, n))
	produced := time.Since(start)

	designs := len(couchdb.DesignDocs())
	group := "loss-" + db
	args := func(life int) []string {
		return []string{
			"-brokers", b.Addr(), "-couchdb", couchURL, "-db", db,
			"-group-id", group, "-client-id", fmt.Sprintf("loss-crash-%d", life),
			"-topic-pattern", "^" + regexp.QuoteMeta(topic) + "$",
			"-dead-letter-topic", kafkatest.Topic(t, "dlq"),
			"-session-timeout", "6s", "-heartbeat", "500ms", "-batch-wait", "10ms",
			"-listen", "127.0.0.1:0", "-log-level", "info",
		}
	}
	ctx := context.Background()
	stored := func() int {
		c, err := DocCount(ctx, couchURL, db)
		if err != nil {
			return 0 // not created yet
		}
		return c - designs
	}

	// Kill points: one random fraction of the drain in each third of [10%, 90%].
	var at []int
	for k := range kills {
		lo := 0.10 + 0.80*float64(k)/float64(kills)
		at = append(at, int(float64(n)*(lo+rng.Float64()*0.80/float64(kills))))
	}

	// Counters of each life, scraped from /metrics until it dies.
	var (
		mu    sync.Mutex
		lives []map[string]float64
	)
	scrape := func(svc *servicetest.Service, life int, stop <-chan struct{}) {
		for {
			if m, err := svc.Metrics("activation_persister_"); err == nil {
				mu.Lock()
				lives[life] = m
				mu.Unlock()
			}
			select {
			case <-stop:
				return
			case <-time.After(200 * time.Millisecond):
			}
		}
	}

	drain := time.Now()
	var killedAt []string
	var rejoin []time.Duration
	for life := 0; ; life++ {
		lives = append(lives, nil)
		lifeStart := time.Now()
		svc := servicetest.Start(t, bin, nil, args(life)...)
		stop := make(chan struct{})
		scraped := make(chan struct{})
		go func() { defer close(scraped); scrape(svc, life, stop) }()
		if life > 0 {
			// Working again: it writes, or finds written, what its
			// predecessor left uncommitted.
			working := func() bool {
				mu.Lock()
				m := lives[life]
				mu.Unlock()
				if m["activation_persister_persisted_total"]+m["activation_persister_conflicts_total"] > 0 {
					return true
				}
				lag, err := GroupLag(ctx, b, group, topic) // nothing left to write
				return err == nil && lag == 0
			}
			if !poll(60*time.Second, working) {
				t.Fatalf("the restarted service wrote nothing in 60 s (stored %d of %d); its logs:\n%s", stored(), n, svc.Tail(40))
			}
			rejoin = append(rejoin, time.Since(lifeStart))
		}
		if life < kills {
			waitFor(t, 3*time.Minute, fmt.Sprintf("%d activations stored before kill %d", at[life], life+1),
				func() bool { return stored() >= at[life] })
			time.Sleep(time.Duration(rng.IntN(200)) * time.Millisecond)
			svc.Kill(t)
			close(stop)
			<-scraped
			killedAt = append(killedAt, fmt.Sprint(stored()))
			continue
		}
		waitFor(t, 4*time.Minute, fmt.Sprintf("all %d activations stored", n), func() bool { return stored() >= n })
		waitFor(t, 60*time.Second, "the group to commit to the end", func() bool {
			lag, err := GroupLag(ctx, b, group, topic)
			return err == nil && lag == 0
		})
		close(stop)
		<-scraped
		if m, err := svc.Metrics("activation_persister_"); err == nil {
			lives[life] = m
		}
		if err := svc.Terminate(t, 30*time.Second); err != nil {
			t.Errorf("the service did not exit 0 on SIGTERM: %v\n%s", err, svc.Tail(20))
		}
		break
	}
	drained := time.Since(drain)

	tally := checkDatabase(ctx, t, couchURL, db, run, n, 2*time.Minute)
	if c := stored(); c != n {
		t.Errorf("doc_count minus design documents = %d, want %d", c, n)
	}

	var persisted, conflicts, retries float64
	for _, m := range lives {
		persisted += m["activation_persister_persisted_total"]
		conflicts += m["activation_persister_conflicts_total"]
		retries += m["activation_persister_retries_total"]
	}
	t.Logf("SUMMARY %s: n=%d partitions=%d produced in %v; %d SIGKILLs at stored=%s; rejoin after restart %v; drained in %v (%.0f/s incl. restarts); persisted(scraped, lower bound)=%.0f conflicts(scraped, lower bound)=%.0f retries=%.0f; present=%d missing=%d duplicates=%d",
		t.Name(), n, partitions, produced.Round(time.Millisecond), kills, strings.Join(killedAt, ","), roundAll(rejoin),
		drained.Round(time.Millisecond), float64(n)/drained.Seconds(), persisted, conflicts, retries,
		tally.Present, tally.Missing, tally.Duplicates)
}

// poll polls cond every 50 ms until it holds or timeout passes, and
// reports whether it held.
func poll(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
	return true
}

func roundAll(ds []time.Duration) []time.Duration {
	out := make([]time.Duration, len(ds))
	for i, d := range ds {
		out[i] = d.Round(100 * time.Millisecond)
	}
	return out
}
