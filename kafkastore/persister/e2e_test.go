package persister

import (
	"context"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-whisk/activationstore/internal/activationtest"
	"github.com/go-whisk/activationstore/internal/couchtest"
	"github.com/go-whisk/activationstore/internal/faultproxy"
	"github.com/go-whisk/activationstore/internal/kafkatest"
	"github.com/go-whisk/activationstore/kafkastore"
	"github.com/go-whisk/activationstore/primary/couchdb"
	"github.com/go-whisk/activationstore/primary/memory"
	"github.com/go-whisk/activationstore/store"
)

// TestMain stops the CouchDB test server with the test binary (for the
// internal and external tests of the package alike).
// TestMain stops the shared test servers (CouchDB, and Apache Kafka under
// KAFKATEST=apache) with the test binary.
func TestMain(m *testing.M) {
	code := m.Run()
	kafkatest.Stop()
	couchtest.Stop()
	os.Exit(code)
}

// storeThroughKafka publishes as through the KafkaStore, from concurrent
// callers as an invoker would.
func storeThroughKafka(t *testing.T, ks *kafkastore.Store, as []*store.Activation) {
	t.Helper()
	const callers = 32
	var wg sync.WaitGroup
	errs := make(chan error, callers)
	for c := range callers {
		wg.Go(func() {
			for i := c; i < len(as); i += callers {
				if _, err := ks.Store(context.Background(), as[i], store.UserContext{}); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("KafkaStore.Store: %v", err)
	}
}

func TestPersisterEndToEndThroughKafkaStore(t *testing.T) {
	b := kafkatest.Start(t)
	topic := kafkatest.Topic(t, "completed-others")
	mem := memory.New()
	ks, err := kafkastore.New(mem, kafkastore.WithBrokers(b.Addr()), kafkastore.WithTopic(topic), kafkastore.WithTopicPartitions(4), kafkastore.WithLinger(time.Millisecond))
	if err != nil {
		t.Fatalf("kafkastore.New: %v", err)
	}
	defer ks.Close()

	group := kafkatest.Topic(t, "group")
	p := newTestPersister(t, b, mem, WithGroupID(group), WithTopicPattern(exactTopics(topic)))
	runPersister(t, p)

	const n = 10_000
	as := make([]*store.Activation, n)
	for i := range as {
		as[i] = activationtest.New("guest")
	}
	start := time.Now()
	storeThroughKafka(t, ks, as)
	t.Logf("published %d in %v", n, time.Since(start))
	waitUntil(t, 60*time.Second, "10k activations persisted", func() bool { return mem.Len() >= n })
	t.Logf("persisted %d after %v", n, time.Since(start))
	waitCommittedToEnd(t, b, group, topic, 4, p)
	checkAllStored(t, ks, "guest", as) // reads go through the KafkaStore to the primary
	if s := p.Stats(); s.Persisted != n {
		t.Errorf("persisted %d, want %d", s.Persisted, n)
	}
}

func newCouchPrimary(t *testing.T, rawURL string, opts ...couchdb.Option) *couchdb.Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := couchdb.New(ctx, rawURL, couchtest.DBName(t), opts...)
	if err != nil {
		t.Fatalf("couchdb.New: %v", err)
	}
	return s
}

func TestPersisterIntoCouchDB(t *testing.T) {
	b := kafkatest.Start(t)
	topic := kafkatest.Topic(t, "completed-others")
	couch := newCouchPrimary(t, couchtest.URL(t))
	ks, err := kafkastore.New(couch, kafkastore.WithBrokers(b.Addr()), kafkastore.WithTopic(topic), kafkastore.WithTopicPartitions(2), kafkastore.WithLinger(time.Millisecond))
	if err != nil {
		t.Fatalf("kafkastore.New: %v", err)
	}
	defer ks.Close()
	const n = 1000
	as := make([]*store.Activation, n)
	for i := range as {
		as[i] = activationtest.New("guest")
	}
	storeThroughKafka(t, ks, as)
	// Half of them replayed: absorbed as conflicts by _bulk_docs.
	values := make([][]byte, 0, n/2)
	for _, a := range as[:n/2] {
		values = append(values, resultMessage(t, a))
	}
	produceValues(t, b, topic, values...)

	group := kafkatest.Topic(t, "group")
	p := newTestPersister(t, b, couch, WithGroupID(group), WithTopicPattern(exactTopics(topic)))
	start := time.Now()
	runPersister(t, p)
	waitCommittedToEnd(t, b, group, topic, 2, p)
	t.Logf("persisted %d into CouchDB in %v", n, time.Since(start))
	checkAllStored(t, ks, "guest", as)
	s := p.Stats()
	if kind, _ := couchtest.SharedKind(); kind == couchtest.Cluster {
		// On a cluster a replay written through another coordinator while
		// its original is in flight can be answered ok rather than 409:
		// both carry the same document, so the same revision. Every
		// delivery is counted once all the same, and no document may have
		// a second revision.
		if s.Persisted < n || s.Persisted+s.Conflicts != n+n/2 {
			t.Errorf("persisted %d conflicts %d; want at least %d persisted and %d in all", s.Persisted, s.Conflicts, n, n+n/2)
		}
		status, body, err := couchtest.Do(context.Background(), "GET", couchtest.URL(t),
			"/"+url.PathEscape(couch.DB())+"/_all_docs?include_docs=true&conflicts=true", nil)
		if err != nil || status != 200 {
			t.Fatalf("_all_docs: %d %.200s %v", status, body, err)
		}
		if c := strings.Count(string(body), `"_conflicts"`); c != 0 {
			t.Errorf("%d documents have _conflicts; want 0", c)
		}
		return
	}
	if s.Persisted != n || s.Conflicts != n/2 {
		t.Errorf("persisted %d conflicts %d; want %d and %d", s.Persisted, s.Conflicts, n, n/2)
	}
}

// CouchDB unreachable for a while (a TCP proxy drops every connection):
// the persister retries, commits nothing it has not written, and loses
// nothing once CouchDB is back.
func TestPersisterCouchDBOutage(t *testing.T) {
	b := kafkatest.Start(t)
	topic := kafkatest.Topic(t, "completed-others")
	b.CreateTopic(t, topic, 2, nil)
	u, err := url.Parse(couchtest.URL(t))
	if err != nil {
		t.Fatal(err)
	}
	proxy := faultproxy.Start(t, u.Host)
	u.Host = proxy.Addr()
	couch := newCouchPrimary(t, u.String(), couchdb.WithTimeout(5*time.Second))

	group := kafkatest.Topic(t, "group")
	p := newTestPersister(t, b, couch, WithGroupID(group), WithTopicPattern(exactTopics(topic)))
	runPersister(t, p)
	first := produceActivations(t, b, topic, "guest", 200)
	waitCommittedToEnd(t, b, group, topic, 2)

	proxy.Drop()
	second := produceActivations(t, b, topic, "guest", 300)
	waitUntil(t, 15*time.Second, "retries during the outage", func() bool { return p.Stats().Retries >= 3 })
	for part, off := range committedOffsets(t, b, group, topic, 2) {
		if off > 100 { // 200 round-robin over 2 partitions before the outage
			t.Fatalf("partition %d committed to %d during the outage", part, off)
		}
	}
	if err := proxy.Restore(); err != nil {
		t.Fatalf("restore proxy: %v", err)
	}
	waitCommittedToEnd(t, b, group, topic, 2, p)
	checkAllStored(t, couch, "guest", append(first, second...))
	if s := p.Stats(); s.Persisted+s.Conflicts < 500 || s.Retries < 3 {
		t.Errorf("stats persisted %d conflicts %d retries %d", s.Persisted, s.Conflicts, s.Retries)
	}
}
