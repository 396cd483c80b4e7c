package losstest

import (
	"context"
	"fmt"
	"regexp"
	"sync"
	"testing"
	"time"

	"github.com/go-whisk/activationstore/internal/kafkatest"
	"github.com/go-whisk/activationstore/internal/testvolume"
	"github.com/go-whisk/activationstore/kafkastore"
	"github.com/go-whisk/activationstore/kafkastore/persister"
)

// Three persisters of one group drain 50k activations into CouchDB; one
// stops and another starts in the middle: the group rebalances twice under
// load, records persisted but not committed by a partition's previous
// owner are absorbed as conflicts, and nothing is lost.
func TestRebalanceUnderLoadLosesNothing(t *testing.T) {
	n, partitions := testvolume.Pick(20_000, 25_000, 50_000), 12
	b := kafkatest.Start(t)
	topic := kafkatest.Topic(t, "completed")
	b.CreateTopic(t, topic, partitions, nil)
	ctx := context.Background()
	primary, couchURL, db := couchPrimary(ctx, t)
	run := NewRun()
	Produce(t, b.Addr(), topic, Records(t, run, n))

	group := kafkatest.Topic(t, "group")
	dlq := kafkatest.Topic(t, "dlq")
	pattern := regexp.MustCompile("^" + regexp.QuoteMeta(topic) + "$")
	var (
		mu      sync.Mutex
		members []*member
	)
	start := func(name string) *member {
		p, err := persister.New(primary,
			kafkastore.WithBrokers(b.Addr()),
			kafkastore.WithClientID(name),
			persister.WithGroupID(group),
			persister.WithTopicPattern(pattern),
			persister.WithDeadLetterTopic(dlq),
			persister.WithGroupTimeouts(6*time.Second, 6*time.Second, 300*time.Millisecond),
			// Small batches and a small in-flight cap keep the drain long
			// enough for two rebalances to happen in its middle.
			persister.WithBatch(200, 4<<20, 10*time.Millisecond),
			persister.WithMaxInFlightBytes(4<<20),
			persister.WithRetryBackoff(50*time.Millisecond, time.Second),
			persister.WithCommitInterval(200*time.Millisecond),
			persister.WithDrainTimeout(2*time.Second),
		)
		if err != nil {
			t.Fatalf("persister.New: %v", err)
		}
		m := runMember(name, p)
		mu.Lock()
		members = append(members, m)
		mu.Unlock()
		return m
	}
	settled := func() (sum int64) { // persisted or found persisted, across members
		mu.Lock()
		defer mu.Unlock()
		for _, m := range members {
			s := m.p.Stats()
			sum += s.Persisted
		}
		return sum
	}

	began := time.Now()
	a, bm, _ := start("loss-a"), start("loss-b"), start("loss-c")
	defer func() {
		for _, m := range members {
			m.cancel()
		}
	}()
	waitFor(t, time.Minute, "the first members to be ready", func() bool { return a.p.Ready() && bm.p.Ready() })
	waitFor(t, 2*time.Minute, "10% persisted", func() bool { return settled() >= int64(n/10) })
	stoppedAt := settled()
	bm.stop(t)
	bStats := bm.p.Stats()
	waitFor(t, 2*time.Minute, "30% persisted", func() bool { return settled() >= int64(n*3/10) })
	startedAt := settled()
	d := start("loss-d")
	waitFor(t, time.Minute, "the new member to be assigned partitions", func() bool {
		return len(d.p.Stats().Partitions) > 0
	})
	joinedAt := settled()
	waitFor(t, 3*time.Minute, "the group to commit to the end", func() bool {
		lag, err := GroupLag(ctx, b, group, topic)
		return err == nil && lag == 0
	})
	drained := time.Since(began)

	var persisted, conflicts, retries int64
	var perMember string
	var generation int32
	for _, m := range members {
		s := m.p.Stats()
		persisted += s.Persisted
		conflicts += s.Conflicts
		retries += s.Retries
		generation = max(generation, s.Generation)
		perMember += fmt.Sprintf(" %s:%d/%d", m.name, s.Persisted, s.Conflicts)
	}
	tally := checkDatabase(ctx, t, couchURL, db, run, n, time.Minute)
	// Each document is created once, so no more than n creations are
	// counted. A write that CouchDB applied while its member was
	// abandoning it (rebalance, drain timeout) is named in the member's
	// last commit, and the next owner that finds it counts it persisted;
	// only when that commit fails does it count a conflict instead.
	// Between them, every record.
	if persisted > int64(n) || persisted+conflicts < int64(n) {
		t.Errorf("over the members Persisted = %d and Conflicts = %d; want Persisted <= %d <= Persisted+Conflicts",
			persisted, conflicts, n)
	}
	if bStats.Persisted == 0 || d.p.Stats().Persisted+d.p.Stats().Conflicts == 0 {
		t.Errorf("the stopped member (%d) or the new one (%d) did no work: the rebalances did not happen under load",
			bStats.Persisted, d.p.Stats().Persisted+d.p.Stats().Conflicts)
	}
	t.Logf("SUMMARY %s: n=%d partitions=%d members=3, b stopped at persisted=%d, d started at %d and assigned at %d; last generation=%d; drained in %v; persisted=%d conflicts=%d retries=%d; per member persisted/conflicts:%s; present=%d missing=%d duplicates=%d",
		t.Name(), n, partitions, stoppedAt, startedAt, joinedAt, generation, drained.Round(time.Millisecond),
		persisted, conflicts, retries, perMember, tally.Present, tally.Missing, tally.Duplicates)
}
