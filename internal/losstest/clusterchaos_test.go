package losstest

import (
	"context"
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/go-whisk/activationstore/internal/couchtest"
	"github.com/go-whisk/activationstore/internal/kafkatest"
	"github.com/go-whisk/activationstore/internal/testvolume"
	"github.com/go-whisk/activationstore/kafkastore"
	"github.com/go-whisk/activationstore/kafkastore/persister"
	"github.com/go-whisk/activationstore/primary/couchdb"
	"github.com/go-whisk/activationstore/store"
)

// Two persisters drain into a 3-node CouchDB cluster (n = 3, q = 2) of
// their own, each given the URLs of every node, while the node they write
// to is killed (SIGKILL) and restarted, then the node they write to next is
// stopped (SIGTERM) and restarted, then another node is killed and
// restarted. Every activation arrives exactly once, no document has a
// second leaf revision (_conflicts), and the longest time without progress
// is reported.
//
// The drain must outlast every outage, however fast this machine drains:
// a fixed volume drained before the third outage on a quiet machine (20,000
// records) or took minutes on a loaded one (80,000). So the test keeps a
// backlog in front of the persisters until the last node is back, and the
// volume only sets the records produced up front and between outages.
func TestClusterNodeChaosLosesNothing(t *testing.T) {
	const partitions = 4
	var (
		upFront = testvolume.Pick(3_000, 6_000, 80_000)
		// Settled records before the first outage and between outages.
		firstAt, between = testvolume.Pick(300, 600, 8_000), testvolume.Pick(1_000, 2_000, 20_000)
		// The backlog kept while the outages go on: more than the
		// persisters drain in the seconds a node is down.
		reserve = testvolume.Pick(2_000, 3_000, 10_000)
		// Under -short the first outage only: a SIGKILL of the node the
		// persisters write to.
		allOutages = testvolume.Current() != testvolume.Short
	)
	ctx, cancelAll := context.WithTimeout(context.Background(), 25*time.Minute)
	defer cancelAll()
	cluster, err := couchtest.StartCluster(ctx)
	if err != nil {
		t.Fatalf("a 3-node CouchDB cluster: %v", err)
	}
	defer func() {
		if t.Failed() {
			cluster.KeepFiles()
			return
		}
		cluster.Close()
	}()
	urls := cluster.URLs()
	hosts := make([]string, len(urls))
	list := urls[0]
	for i, raw := range urls {
		u, err := url.Parse(raw)
		if err != nil {
			t.Fatal(err)
		}
		hosts[i] = u.Host
		if i > 0 {
			u.User = nil // credentials once, in the first URL
			list += "," + u.String()
		}
	}
	nodeOf := func(host string) int {
		for i, h := range hosts {
			if h == host {
				return i
			}
		}
		return -1
	}

	b := kafkatest.Start(t)
	topic := kafkatest.Topic(t, "completed")
	b.CreateTopic(t, topic, partitions, nil)
	db := couchtest.DBName(t)
	defer func() { // the cluster is gone after the test; the database first
		dctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := couchtest.DeleteDB(dctx, urls[0], db); err != nil {
			t.Errorf("delete %s: %v", db, err)
		}
	}()
	run := NewRun()
	var produced atomic.Int64 // records [0, produced) are in the topic
	produce := func(k int) {
		t.Helper()
		from := int(produced.Load())
		msgs := make([]kafka.Message, k)
		for i := range msgs {
			msgs[i] = Record(t, run, from+i)
		}
		Produce(t, b.Addr(), topic, msgs)
		produced.Add(int64(k))
	}
	produce(upFront)

	group := kafkatest.Topic(t, "group")
	pattern := regexp.MustCompile("^" + regexp.QuoteMeta(topic) + "$")
	var (
		members []*member
		stores  []*couchdb.Store // members[i]'s primary
	)
	for _, name := range []string{"chaos-a", "chaos-b"} {
		s, err := couchdb.New(ctx, list, db, couchdb.WithTimeout(10*time.Second))
		if err != nil {
			t.Fatalf("couchdb.New with the node list: %v", err)
		}
		defer s.Close()
		p, err := persister.New(s,
			kafkastore.WithBrokers(b.Addr()),
			kafkastore.WithClientID(name),
			persister.WithGroupID(group),
			persister.WithTopicPattern(pattern),
			persister.WithDeadLetterTopic(kafkatest.Topic(t, "dlq")),
			persister.WithGroupTimeouts(6*time.Second, 6*time.Second, 300*time.Millisecond),
			// Small batches keep the drain going through every outage.
			persister.WithBatch(100, 4<<20, 10*time.Millisecond),
			persister.WithMaxInFlightBytes(2<<20),
			persister.WithRetryBackoff(50*time.Millisecond, time.Second),
			persister.WithCommitInterval(200*time.Millisecond),
			persister.WithDrainTimeout(2*time.Second),
		)
		if err != nil {
			t.Fatalf("persister.New: %v", err)
		}
		members, stores = append(members, runMember(name, p)), append(stores, s)
	}
	defer func() {
		for _, m := range members {
			m.cancel() // on an early failure
		}
	}()
	stopMembers := func() {
		for _, m := range members {
			m.stop(t)
		}
	}
	settled := func() (sum int64) {
		for _, m := range members {
			s := m.p.Stats()
			sum += s.Persisted + s.Conflicts
		}
		return sum
	}

	// Progress sampler: the longest time the persisters made no progress.
	began := time.Now()
	var longestStall atomic.Int64
	samplerDone := make(chan struct{})
	var samplerWG sync.WaitGroup
	samplerWG.Go(func() {
		last, lastAt := int64(-1), time.Now()
		for {
			select {
			case <-samplerDone:
				return
			case <-time.After(20 * time.Millisecond):
			}
			v := settled()
			now := time.Now()
			if v != last {
				last, lastAt = v, now
				continue
			}
			if v < produced.Load() {
				if d := now.Sub(lastAt); int64(d) > longestStall.Load() {
					longestStall.Store(int64(d))
				}
			}
		}
	})

	// The outages, each started at a share of the drain.
	type outage struct {
		what           string
		node           int
		at             int64 // settled when the node went down
		down, rejoined time.Duration
	}
	var outages []outage
	// keepAhead tops the backlog up to reserve; the test's goroutine calls
	// it while it waits, so that Produce may fail the test.
	keepAhead := func() {
		if backlog := produced.Load() - settled(); backlog < int64(reserve) {
			produce(reserve - int(backlog))
		}
	}
	waitSettled := func(what string, want int64) {
		t.Helper()
		waitFor(t, 5*time.Minute, what, func() bool {
			keepAhead()
			return settled() >= want
		})
	}
	down := func(what string, node int, kill bool) {
		t.Helper()
		o := outage{what: what, node: node, at: settled()}
		start := time.Now()
		var err error
		if kill {
			err = cluster.Kill(node)
		} else {
			err = cluster.Stop(node)
		}
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		// The persisters drain with the node down, then while it restarts.
		waitFor(t, time.Minute, "the node down for 3 s", func() bool {
			keepAhead()
			return time.Since(start) >= 3*time.Second
		})
		o.down = time.Since(start)
		restarted := make(chan error, 1)
		go func() { restarted <- cluster.Restart(ctx, node) }()
		var restartErr error
		waitFor(t, 10*time.Minute, "the node to restart", func() bool {
			keepAhead()
			select {
			case restartErr = <-restarted:
				return true
			default:
				return false
			}
		})
		if restartErr != nil {
			t.Fatalf("%s: restart node %d: %v", what, node, restartErr)
		}
		o.rejoined = time.Since(start)
		if left := produced.Load() - settled(); left <= 0 {
			t.Errorf("%s: the persisters had drained everything by the time node %d was back: the outage tested nothing", what, node)
		}
		outages = append(outages, o)
	}
	current := func() int { return nodeOf(stores[0].Node()) }

	waitSettled("the first records persisted", int64(firstAt))
	first := current()
	down("kill the node the persisters write to", first, true)
	waitSettled("records persisted after the first outage", settled()+int64(between))
	second := current()
	if second == first {
		t.Errorf("persister a still writes to node %d, which was killed", first)
	}
	if allOutages {
		down("stop (SIGTERM) the node the persisters write to now", second, false)
		waitSettled("records persisted after the second outage", settled()+int64(between))
		other := 0
		for other == current() || other == second {
			other++
		}
		down("kill another node", other, true)
	}
	n := int(produced.Load()) // no more records from here on

	waitFor(t, 10*time.Minute, "the group to commit to the end", func() bool {
		lag, err := GroupLag(ctx, b, group, topic)
		return err == nil && lag == 0
	})
	drained := time.Since(began)
	close(samplerDone)
	samplerWG.Wait()
	stopMembers()

	var persisted, conflicts, retries, moves int64
	var perMember []string
	for i, m := range members {
		s := m.p.Stats()
		persisted += s.Persisted
		conflicts += s.Conflicts
		retries += s.Retries
		moves += stores[i].NodeMoves()
		perMember = append(perMember, fmt.Sprintf("%s:%d/%d moves=%d", m.name, s.Persisted, s.Conflicts, stores[i].NodeMoves()))
	}
	for i, o := range outages {
		if o.at >= int64(n) {
			t.Errorf("outage %d (%s) came after the drain: nothing was tested", i, o.what)
		}
	}
	if moves == 0 {
		t.Errorf("the persisters never moved to another node")
	}

	// Read back once every node is back. _all_docs reads one copy of each
	// shard range, and a copy on a node that was down catches up through
	// the cluster's internal replication: wait for the exact set, then
	// count the conflicts. A document _all_docs still misses is looked up
	// by GET, which reads a quorum of copies, to tell lagging from lost.
	listCtx, cancelList := context.WithTimeout(ctx, 4*time.Minute)
	defer cancelList()
	var tally Tally
	var ids []string
	readStart := time.Now()
	for {
		ids, err = DocIDs(listCtx, urls[current()], db)
		if err != nil {
			t.Fatalf("list the database: %v", err)
		}
		tally = CheckDocIDs(ids, run, n)
		if tally.OK() && tally.Present == n || time.Since(readStart) > 150*time.Second {
			break
		}
		time.Sleep(2 * time.Second)
	}
	converged := time.Since(readStart)
	lost := 0
	if tally.Missing > 0 {
		seen := map[string]bool{}
		for _, id := range ids {
			seen[id] = true
		}
		for i := range n {
			if a := Activation(run, i); !seen[a.DocID()] {
				if _, err := stores[0].Get(listCtx, a.Namespace, a.ActivationID, store.UserContext{}); err != nil {
					lost++
				}
			}
		}
	}
	if !tally.OK() || tally.Present != n {
		t.Errorf("database %s after %v: %v (%d of them not found by GET either); want all %d present once", db, converged.Round(time.Millisecond), tally, lost, n)
	}
	conflicted, firstConflicted, err := Conflicted(listCtx, urls[current()], db)
	if err != nil {
		t.Errorf("count the conflicts: %v", err)
	}
	if conflicted != 0 {
		t.Errorf("%d documents have _conflicts (first: %v); want 0", conflicted, firstConflicted)
	}
	var phases []string
	for _, o := range outages {
		phases = append(phases, fmt.Sprintf("%s: node %d at %d, down %v, back in %v", o.what, o.node, o.at,
			o.down.Round(time.Millisecond), o.rejoined.Round(time.Millisecond)))
	}
	t.Logf("SUMMARY %s (volume %v): n=%d partitions=%d cluster n=3 q=2 (started in %v); %s; drained in %v; persisted=%d conflicts=%d retries=%d node moves=%d [%s]; present=%d missing=%d (lost to GET too: %d) duplicates=%d foreign=%d after %v; documents with _conflicts=%d; longest stall %v",
		t.Name(), testvolume.Current(), n, partitions, cluster.Startup().Round(time.Millisecond), strings.Join(phases, "; "),
		drained.Round(time.Millisecond), persisted, conflicts, retries, moves, strings.Join(perMember, " "),
		tally.Present, tally.Missing, lost, tally.Duplicates, tally.Foreign, converged.Round(time.Millisecond), conflicted,
		time.Duration(longestStall.Load()).Round(time.Millisecond))
}
