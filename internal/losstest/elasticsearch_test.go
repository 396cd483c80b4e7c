package losstest

import (
	"context"
	"io"
	"net"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-whisk/activationstore/internal/kafkatest"
	"github.com/go-whisk/activationstore/internal/searchtest"
	"github.com/go-whisk/activationstore/internal/testvolume"
	"github.com/go-whisk/activationstore/kafkastore"
	"github.com/go-whisk/activationstore/kafkastore/persister"
	"github.com/go-whisk/activationstore/primary/elasticsearch"
	"github.com/go-whisk/activationstore/store"
)

// searchVersion is the version of the restartable servers: the selected
// one, or OpenSearch 2 when that is Elasticsearch 6 (whose clusters the
// harness does not start).
func searchVersion(t *testing.T) searchtest.Version {
	v, err := searchtest.SelectedVersion()
	if err != nil {
		t.Fatal(err)
	}
	if v.Distribution() == "elasticsearch" && v.Major() < 7 {
		return searchtest.OpenSearch2
	}
	return v
}

// esDrain runs a persister from topic into es and returns it with a stop
// function that checks Run's error.
func esDrain(t *testing.T, b *kafkatest.Broker, es store.Store, topic string) (*persister.Persister, func()) {
	t.Helper()
	p, err := persister.New(es,
		kafkastore.WithBrokers(b.Addr()),
		persister.WithGroupID(kafkatest.Topic(t, "group")),
		persister.WithTopicPattern(regexp.MustCompile("^"+regexp.QuoteMeta(topic)+"$")),
		persister.WithDeadLetterTopic(kafkatest.Topic(t, "dlq")),
		persister.WithGroupTimeouts(6*time.Second, 6*time.Second, 500*time.Millisecond),
		persister.WithBatch(500, 4<<20, 10*time.Millisecond),
		persister.WithRetryBackoff(100*time.Millisecond, 2*time.Second),
		persister.WithCommitInterval(200*time.Millisecond),
		persister.WithDrainTimeout(2*time.Second),
	)
	if err != nil {
		t.Fatalf("persister.New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	return p, func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}
}

// lossES opens the store the loss tests drain into: indices of the test's
// own prefix with the given shards and replicas, closed at the test's end.
func lossES(ctx context.Context, t *testing.T, urls string, shards, replicas int) *elasticsearch.Store {
	t.Helper()
	es, err := elasticsearch.New(ctx, urls, elasticsearch.WithIndexPattern(searchtest.IndexPrefix(t)+"%s"),
		elasticsearch.WithShards(shards, replicas), elasticsearch.WithTimeout(30*time.Second))
	if err != nil {
		t.Fatalf("elasticsearch.New: %v", err)
	}
	t.Cleanup(func() { _ = es.Close() })
	return es
}

// esDrainAThird produces the first third of run's n records, drains them
// with esDrain and returns once they are persisted; rest produces the
// other two thirds. A fault right after rest falls mid-drain at any
// volume: one timed by progress through a backlog produced up front came
// after the drain at small volumes, and tested nothing.
func esDrainAThird(t *testing.T, b *kafkatest.Broker, es store.Store, topic string, run uint32, n int) (p *persister.Persister, stop, rest func()) {
	t.Helper()
	records := Records(t, run, n)
	Produce(t, b.Addr(), topic, records[:n/3])
	p, stop = esDrain(t, b, es, topic)
	waitFor(t, 3*time.Minute, "a third persisted", func() bool { return p.Stats().Persisted >= int64(n/3) })
	return p, stop, func() { Produce(t, b.Addr(), topic, records[n/3:]) }
}

// esCheck lists every document of the run's namespace and checks that
// each activation is there exactly once.
func esCheck(t *testing.T, es *elasticsearch.Store, p *persister.Persister, run uint32, n int) {
	t.Helper()
	waitFor(t, 5*time.Minute, "every record persisted", func() bool {
		s := p.Stats()
		return s.Persisted+s.Conflicts >= int64(n)
	})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	list, err := es.List(ctx, store.Query{Namespace: Namespace}, store.UserContext{})
	if err != nil {
		t.Fatalf("list: %v", err)
	}
	ids := make([]string, len(list))
	for i, a := range list {
		ids[i] = a.DocID()
	}
	tally := CheckDocIDs(ids, run, n)
	final := p.Stats()
	if !tally.OK() || tally.Present != n {
		t.Errorf("%v; want all %d present once", tally, n)
	}
	if final.DeadLettered != 0 {
		t.Errorf("%d records dead-lettered", final.DeadLettered)
	}
	t.Logf("SUMMARY %s: n=%d persisted=%d conflicts=%d retries=%d; present=%d missing=%d duplicates=%d",
		t.Name(), n, final.Persisted, final.Conflicts, final.Retries, tally.Present, tally.Missing, tally.Duplicates)
}

// The server is killed (SIGKILL) mid-drain and started again on the same
// port: the persister retries, and every activation ends up stored once.
func TestElasticsearchRestartLosesNothing(t *testing.T) {
	n := testvolume.Pick(4_000, 8_000, 20_000)
	b := kafkatest.Start(t)
	topic := kafkatest.Topic(t, "completed")
	b.CreateTopic(t, topic, 4, nil)
	c := searchtest.StartCluster(t, 1, searchtest.WithVersion(searchVersion(t)))
	ctx := context.Background()
	// A one-node cluster takes a fresh HTTP port when it restarts: the
	// store talks to a forwarder that follows it, as a load balancer would.
	fw := newForwarder(t, c.URL(0))
	es := lossES(ctx, t, fw.url(), 1, 0)
	run := NewRun()
	p, stop, rest := esDrainAThird(t, b, es, topic, run, n)
	defer stop()
	rest()
	atKill := p.Stats().Persisted
	if err := c.Kill(0); err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * time.Second)
	if err := c.Restart(t.Context(), 0); err != nil {
		t.Fatal(err)
	}
	fw.target.Store(strings.TrimPrefix(c.URL(0), "http://"))
	esCheck(t, es, p, run, n)
	if p.Stats().Retries == 0 {
		t.Errorf("no retry counted across the restart")
	}
	if atKill >= int64(n) {
		t.Errorf("the kill came after the drain (%d persisted of %d): nothing was tested", atKill, n)
	}
	t.Logf("killed at %d persisted of %d", atKill, n)
}

// A 2-node OpenSearch cluster, indices with one replica: the node that is
// not the cluster manager is killed mid-drain (the manager keeps the
// quorum of a 2-node voting configuration); its shards' replicas on the
// other node take over, and every activation ends up stored once.
func TestClusterNodeLossLosesNothing(t *testing.T) {
	n := testvolume.Pick(4_000, 8_000, 20_000)
	b := kafkatest.Start(t)
	topic := kafkatest.Topic(t, "completed")
	b.CreateTopic(t, topic, 4, nil)
	c := searchtest.StartCluster(t, 2, searchtest.WithVersion(searchVersion(t)))
	ctx := context.Background()
	es := lossES(ctx, t, strings.Join(c.URLs(), ","), 2, 1)
	run := NewRun()
	p, stop, rest := esDrainAThird(t, b, es, topic, run, n)
	defer stop()
	manager := c.ClusterManager()
	if manager < 0 {
		t.Fatal("no cluster manager elected")
	}
	victim := 1 - manager
	// Every replica started before the kill: a node lost while its
	// primary's only replica still recovers takes that shard's records
	// with it until it returns (seen at small volumes, where a third
	// drains in seconds). Then the rest, drained through the loss.
	c.WaitForStatus(manager, "green", 2*time.Minute)
	rest()
	atKill := p.Stats().Persisted
	if err := c.Kill(victim); err != nil {
		t.Fatal(err)
	}
	esCheck(t, es, p, run, n)
	t.Logf("killed node %d (manager: %d) at %d persisted of %d", victim, manager, atKill, n)
}

// forwarder relays TCP connections to a target that may change.
type forwarder struct {
	ln     net.Listener
	target atomic.Value // host:port
}

func newForwarder(t *testing.T, targetURL string) *forwarder {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &forwarder{ln: ln}
	f.target.Store(strings.TrimPrefix(targetURL, "http://"))
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				u, err := net.Dial("tcp", f.target.Load().(string))
				if err != nil {
					return
				}
				defer u.Close()
				go func() { _, _ = io.Copy(u, c); _ = u.Close() }()
				_, _ = io.Copy(c, u)
			}()
		}
	}()
	return f
}

func (f *forwarder) url() string { return "http://" + f.ln.Addr().String() }
