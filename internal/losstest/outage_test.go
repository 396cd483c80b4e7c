package losstest

import (
	"context"
	"maps"
	"net/url"
	"regexp"
	"testing"
	"time"

	"github.com/go-whisk/activationstore/internal/couchtest"
	"github.com/go-whisk/activationstore/internal/faultproxy"
	"github.com/go-whisk/activationstore/internal/kafkatest"
	"github.com/go-whisk/activationstore/internal/testvolume"
	"github.com/go-whisk/activationstore/kafkastore"
	"github.com/go-whisk/activationstore/kafkastore/persister"
	"github.com/go-whisk/activationstore/primary/couchdb"
)

// CouchDB unreachable for 10 s (4 s under -short) in the middle of a drain (a TCP proxy
// drops every connection and refuses new ones): the persister retries,
// commits nothing it has not written, and once CouchDB is back persists
// everything and catches up to a lag of 0.
func TestDatabaseOutageLosesNothing(t *testing.T) {
	n, partitions := testvolume.Pick(5_000, 10_000, 30_000), 4
	// Past the persister's 10 s backoff cap at full and default volume.
	outage := testvolume.Pick(4*time.Second, 10*time.Second, 10*time.Second)
	b := kafkatest.Start(t)
	topic := kafkatest.Topic(t, "completed")
	b.CreateTopic(t, topic, partitions, nil)
	couchURL, db := couchtest.URL(t), couchtest.DBName(t)
	u, err := url.Parse(couchURL)
	if err != nil {
		t.Fatal(err)
	}
	proxy := faultproxy.Start(t, u.Host)
	u.Host = proxy.Addr()
	ctx := context.Background()
	primary, err := couchdb.New(ctx, u.String(), db, couchdb.WithTimeout(2*time.Second))
	if err != nil {
		t.Fatalf("couchdb.New through the proxy: %v", err)
	}
	defer primary.Close()

	run := NewRun()
	Produce(t, b.Addr(), topic, Records(t, run, n))

	group := kafkatest.Topic(t, "group")
	p, err := persister.New(primary,
		kafkastore.WithBrokers(b.Addr()),
		persister.WithGroupID(group),
		persister.WithTopicPattern(regexp.MustCompile("^"+regexp.QuoteMeta(topic)+"$")),
		persister.WithDeadLetterTopic(kafkatest.Topic(t, "dlq")),
		persister.WithGroupTimeouts(6*time.Second, 6*time.Second, 500*time.Millisecond),
		persister.WithBatch(500, 4<<20, 10*time.Millisecond),
		persister.WithRetryBackoff(50*time.Millisecond, time.Second),
		persister.WithCommitInterval(200*time.Millisecond),
		persister.WithDrainTimeout(2*time.Second),
	)
	if err != nil {
		t.Fatalf("persister.New: %v", err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- p.Run(runCtx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()

	start := time.Now()
	waitFor(t, 2*time.Minute, "a third persisted", func() bool { return p.Stats().Persisted >= int64(n/3) })
	proxy.Drop()
	dropped := time.Now()
	atDrop := p.Stats()
	time.Sleep(time.Second) // writes in flight at the drop fail and their batches settle
	committedEarly, err := Committed(ctx, b.Addr(), group, topic, partitions)
	if err != nil {
		t.Fatalf("committed offsets: %v", err)
	}
	time.Sleep(outage - time.Since(dropped))
	during := p.Stats()
	committedLate, err := Committed(ctx, b.Addr(), group, topic, partitions)
	if err != nil {
		t.Fatalf("committed offsets: %v", err)
	}
	if err := proxy.Restore(); err != nil {
		t.Fatalf("restore the proxy: %v", err)
	}
	restored := time.Now()
	if !maps.Equal(committedEarly, committedLate) {
		t.Errorf("offsets committed while CouchDB was unreachable: %v, then %v", committedEarly, committedLate)
	}
	if during.Persisted > atDrop.Persisted+4*500 { // at most the batches in flight at the drop

		t.Errorf("persisted %d records while CouchDB was unreachable", during.Persisted-atDrop.Persisted)
	}

	lagOf := func(s persister.Stats) (lag int64) {
		for _, pl := range s.Partitions {
			lag += pl.Lag
		}
		return lag
	}
	waitFor(t, 2*time.Minute, "every record persisted and the lag back to 0", func() bool {
		s := p.Stats()
		return s.Persisted+s.Conflicts >= int64(n) && len(s.Partitions) == partitions && lagOf(s) == 0
	})
	recovered := time.Since(restored)
	drained := time.Since(start)
	final := p.Stats()
	if final.Retries == 0 {
		t.Errorf("no retry counted across a %v outage", outage)
	}
	if lag, err := GroupLag(ctx, b, group, topic); err != nil || lag != 0 {
		t.Errorf("group lag after recovery = %d, %v; want 0", lag, err)
	}

	tally := checkDatabase(ctx, t, couchURL, db, run, n, time.Minute)
	// A batch whose reply the outage cut off was written all the same: its
	// retry meets conflicts. Each document is created once.
	if final.Persisted > int64(n) || final.Persisted+final.Conflicts < int64(n) {
		t.Errorf("Stats(): persisted %d, conflicts %d; want persisted <= %d <= persisted+conflicts", final.Persisted, final.Conflicts, n)
	}
	t.Logf("SUMMARY %s: n=%d partitions=%d outage=%v at persisted=%d; persisted during outage=%d; retries=%d; commits frozen during outage=%v; recovered to lag 0 in %v after restore; total drain %v; persisted=%d conflicts=%d commitErrors=%d; present=%d missing=%d duplicates=%d",
		t.Name(), n, partitions, outage, atDrop.Persisted, during.Persisted-atDrop.Persisted, final.Retries,
		maps.Equal(committedEarly, committedLate), recovered.Round(time.Millisecond), drained.Round(time.Millisecond),
		final.Persisted, final.Conflicts, final.CommitErrors, tally.Present, tally.Missing, tally.Duplicates)
}
