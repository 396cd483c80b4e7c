package persister

import (
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/go-whisk/activationstore/codec"
	"github.com/go-whisk/activationstore/internal/activationtest"
	"github.com/go-whisk/activationstore/internal/couchtest"
	"github.com/go-whisk/activationstore/internal/kafkatest"
	"github.com/go-whisk/activationstore/kafkastore"
	"github.com/go-whisk/activationstore/primary/couchdb"
	"github.com/go-whisk/activationstore/primary/memory"
	"github.com/go-whisk/activationstore/store"
)

// BenchmarkPersisterDrain measures how fast a persister with default
// batching drains a backlog into the CouchDB test server, against raw
// _bulk_docs measured in the same run: the same documents sent straight
// to the server, 500 a request, 4 requests at once (the persister's
// defaults) — the ceiling.
//
// Activation ids are random, as OpenWhisk's are (a UUID without dashes).
// activationtest's ids grow with the clock: raw _bulk_docs sending them in
// order appends at the edge of CouchDB's by-id tree, 3-4 times cheaper for
// the server than the same documents in any other order, such as the
// persister's interleaving of 4 partitions — a gap between the two that
// OpenWhisk's ids never open (0.65× with ordered ids, 0.99× with random
// ones, measured in one run).
//
// Each pair writes into databases of the same shape, since the shape
// decides the server's work:
//
//   - bare: no design documents (the persister's database has those
//     couchdb.New installs removed before the drain). This pair measures
//     what the persister costs; its ratio is ratio_to_bulk.
//   - views: OpenWhisk's design documents, as couchdb.New installs them
//     and deployments have them. CouchDB builds their views in the
//     background as documents arrive (its "ken" indexer, through couchjs):
//     that costs it more CPU per document whoever writes them, and more
//     the longer a phase lasts, so this pair's ratio (ratio_with_views) is
//     noisier and tilted against the slower writer.
//   - single: a persister writing one record at a time (WithBatch(1, …),
//     WithWriteConcurrency(1)), on the first 1,000 records.
//
// Each phase also reports the CPU time per document of the CouchDB server
// (every node and its couchjs children) and of this process (the
// persister, and kfake when it is the broker): on 2 cores they compete for
// the same CPU. Within a pair, the persister and bulk phases alternate in
// order between iterations, against drift.
//
// The backlog is 100,000 records, 10,000 with -short. It runs against
// kfake and real Apache Kafka (sub-benchmarks kfake and apache). Run with
// -benchtime=3x: every iteration drains the whole backlog four times.
func BenchmarkPersisterDrain(b *testing.B) {
	kafkatest.RunBrokers(b, benchPersisterDrain)
}

func benchPersisterDrain(b *testing.B, br *kafkatest.Broker) {
	n := 100_000
	if testing.Short() {
		n = 10_000
	}
	const singleN = 1000
	topic := kafkatest.Topic(b, "completed-others")
	singleTopic := kafkatest.Topic(b, "completed-single")
	br.CreateTopic(b, topic, 4, nil)
	br.CreateTopic(b, singleTopic, 4, nil)

	as := make([]*store.Activation, n)
	values := make([][]byte, n)
	docs := make([][]byte, n)
	for i := range as {
		as[i] = drainActivation()
		values[i] = resultMessage(b, as[i])
		d, err := codec.MarshalDocument(as[i], time.Now())
		if err != nil {
			b.Fatal(err)
		}
		docs[i] = d
	}
	produceValues(b, br, topic, values...)
	produceValues(b, br, singleTopic, values[:singleN]...)

	// Warm the server up (its couchjs processes start on the first view
	// build), so that the first measurement is not penalised.
	bulkDocsInto(b, couchtest.DBName(b), true, docs[:min(n, 20_000)])

	var bulk, persist, bulkViews, persistViews, single phaseCost
	for i := 0; i < b.N; i++ {
		var it struct{ bulk, persist, bulkViews, persistViews, single phaseCost }
		pair := func(first, second func()) {
			if i%2 == 1 {
				first, second = second, first
			}
			first()
			second()
		}
		pair(func() { it.bulk = bulkDocsInto(b, couchtest.DBName(b)+"_bulk", false, docs) },
			func() { it.persist = drain(b, br, topic, n, false) })
		pair(func() { it.bulkViews = bulkDocsInto(b, couchtest.DBName(b)+"_bulk", true, docs) },
			func() { it.persistViews = drain(b, br, topic, n, true) })
		it.single = drain(b, br, singleTopic, singleN, true, WithBatch(1, 4<<20, 0), WithWriteConcurrency(1))
		b.Logf("iteration %d: bare: bulk %s, persister %s; views: bulk %s, persister %s; single %.0f/s",
			i, it.bulk, it.persist, it.bulkViews, it.persistViews, it.single.rate())
		bulk.add(it.bulk)
		persist.add(it.persist)
		bulkViews.add(it.bulkViews)
		persistViews.add(it.persistViews)
		single.add(it.single)
	}
	b.ReportMetric(persist.rate(), "persisted/s")
	b.ReportMetric(bulk.rate(), "bulk_docs/s")
	b.ReportMetric(persist.rate()/bulk.rate(), "ratio_to_bulk")
	b.ReportMetric(persistViews.rate(), "persisted_views/s")
	b.ReportMetric(bulkViews.rate(), "bulk_docs_views/s")
	b.ReportMetric(persistViews.rate()/bulkViews.rate(), "ratio_with_views")
	b.ReportMetric(single.rate(), "single/s")
	b.ReportMetric(persist.rate()/single.rate(), "x_single")
	b.ReportMetric(persist.serverPerDoc(), "server_µs/persisted")
	b.ReportMetric(bulk.serverPerDoc(), "server_µs/bulk_doc")
	b.ReportMetric(persistViews.serverPerDoc(), "server_µs/persisted_views")
	b.ReportMetric(bulkViews.serverPerDoc(), "server_µs/bulk_doc_views")
	b.ReportMetric(persist.clientPerDoc(), "process_µs/persisted")
}

// phaseCost is what phases of a benchmark took: documents, wall time, and
// the CPU time of the CouchDB server and of this process.
type phaseCost struct {
	docs           int
	wall           time.Duration
	server, client time.Duration
}

func (c *phaseCost) add(o phaseCost) {
	c.docs += o.docs
	c.wall += o.wall
	c.server += o.server
	c.client += o.client
}

func (c phaseCost) String() string {
	return fmt.Sprintf("%.0f/s (server %.0f µs/doc, this process %.0f µs/doc)", c.rate(), c.serverPerDoc(), c.clientPerDoc())
}

func (c phaseCost) rate() float64 { return float64(c.docs) / c.wall.Seconds() }

func (c phaseCost) serverPerDoc() float64 {
	return float64(c.server.Microseconds()) / float64(c.docs)
}

func (c phaseCost) clientPerDoc() float64 {
	return float64(c.client.Microseconds()) / float64(c.docs)
}

// measure runs phase, which stores docs documents, and returns its cost.
func measure(b *testing.B, docs int, phase func()) phaseCost {
	b.Helper()
	server0, client0 := serverCPU(), processCPU(b)
	start := time.Now()
	phase()
	wall := time.Since(start)
	return phaseCost{docs: docs, wall: wall, server: serverCPU() - server0, client: processCPU(b) - client0}
}

// serverCPU is the CPU time of the CouchDB test server so far; 0 when it
// is not ours to measure (COUCHDB_URL).
func serverCPU() time.Duration {
	d, err := couchtest.SharedCPUTime()
	if err != nil {
		return 0
	}
	return d
}

// processCPU is this process's CPU time so far.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// bulkDocsInto creates db — with OpenWhisk's design documents, as
// couchdb.New does, when withDesignDocs — writes docs to it with raw
// _bulk_docs (500 a request, 4 at once), deletes it, and returns what the
// writes cost.
func bulkDocsInto(b *testing.B, db string, withDesignDocs bool, docs [][]byte) phaseCost {
	b.Helper()
	ctx := context.Background()
	base := couchtest.URL(b)
	if withDesignDocs {
		c, err := couchdb.New(ctx, base, db)
		if err != nil {
			b.Fatal(err)
		}
		_ = c.Close()
	} else if err := couchtest.CreateDB(ctx, base, db); err != nil {
		b.Fatal(err)
	}
	defer couchtest.DeleteDB(ctx, base, db) //nolint:errcheck // best effort: frees the test server's memory
	return measure(b, len(docs), func() { bulkDocsConcurrently(b, base, db, docs, 500, 4) })
}

// drain runs a persister (fresh group, fresh database, with or without
// the design documents) until it has taken every one of the n records of
// topic, and returns what that cost, from Run to the last record.
func drain(b *testing.B, br *kafkatest.Broker, topic string, n int, withDesignDocs bool, opts ...Option) phaseCost {
	b.Helper()
	base, db := couchtest.URL(b), couchtest.DBName(b)
	setup, cancelSetup := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancelSetup()
	couch, err := couchdb.New(setup, base, db)
	if err != nil {
		b.Fatal(err)
	}
	if !withDesignDocs {
		deleteDesignDocs(setup, b, base, db)
	}
	defer couchtest.DeleteDB(context.Background(), base, db) //nolint:errcheck // best effort: frees the test server's memory
	p := benchPersister(b, br, couch, topic, opts...)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	cost := measure(b, n, func() {
		start := time.Now()
		go func() { done <- p.Run(ctx) }()
		waitDrained(b, p, n, start)
	})
	cancel()
	if err := <-done; err != nil {
		b.Fatal(err)
	}
	return cost
}

// benchPersister is the drain benchmarks' persister of topic into couch:
// default batching, a fresh group.
func benchPersister(b *testing.B, br *kafkatest.Broker, couch store.Store, topic string, opts ...Option) *Persister {
	b.Helper()
	p, err := New(couch, append([]Option{
		kafkastore.WithBrokers(br.Addr()),
		kafkastore.WithLogger(persisterTestLogger()),
		WithGroupID(kafkatest.Topic(b, "bench")),
		WithDeadLetterTopic(kafkatest.Topic(b, "dlq")),
		WithTopicPattern(exactTopics(topic)),
		WithGroupTimeouts(3*time.Second, 3*time.Second, 100*time.Millisecond),
	}, opts...)...)
	if err != nil {
		b.Fatal(err)
	}
	return p
}

// BenchmarkPersisterDrainFromStore measures the whole pipeline while
// Kafka is healthy, with the Store's spool (WithSpool in b.TempDir()) and
// without, in the same run: 64 callers store n records through a
// kafkastore.Store (StoreBatch), as fast as it takes them, while a
// persister with default batching drains the topic into the CouchDB test
// server (databases without design documents, as BenchmarkPersisterDrain's
// bare pair). Metrics of each: stored/s, what the callers saw, and
// persisted/s, n over the time from the first Store until the persister
// had taken every record; this process's CPU per record (Store, spool,
// publisher, persister, and kfake when it is the broker); and
// spool/nospool of persisted/s and of stored/s. The two alternate in order
// between iterations. n is 20,000, 4,000 with -short. Run with
// -benchtime=2x; sub-benchmarks kfake and apache.
func BenchmarkPersisterDrainFromStore(b *testing.B) {
	kafkatest.RunBrokers(b, func(b *testing.B, br *kafkatest.Broker) {
		n := 20_000
		if testing.Short() {
			n = 4_000
		}
		var cost, stored [2]phaseCost // nospool, spool
		for i := range b.N {
			for k := range 2 {
				spooled := (i+k)%2 == 1
				c, s := drainFromStore(b, br, n, spooled)
				j := 0
				if spooled {
					j = 1
				}
				b.Logf("iteration %d, spool %t: stored %.0f/s, persisted %s", i, spooled, s.rate(), c)
				cost[j].add(c)
				stored[j].add(s)
			}
		}
		for j, name := range []string{"nospool", "spool"} {
			b.ReportMetric(cost[j].rate(), name+"_persisted/s")
			b.ReportMetric(stored[j].rate(), name+"_stored/s")
			b.ReportMetric(cost[j].clientPerDoc(), name+"_process_µs/record")
		}
		b.ReportMetric(cost[1].rate()/cost[0].rate(), "persisted_spool/nospool")
		b.ReportMetric(stored[1].rate()/stored[0].rate(), "stored_spool/nospool")
	})
}

// drainFromStore stores n fresh records through a Store (with a spool or
// without) while a persister drains them into a fresh database, and
// returns what the whole took, to the last record persisted, and how long
// the Stores took.
func drainFromStore(b *testing.B, br *kafkatest.Broker, n int, spooled bool) (cost, stored phaseCost) {
	b.Helper()
	as := make([]*store.Activation, n)
	for i := range as {
		as[i] = drainActivation()
	}
	topic := kafkatest.Topic(b, "completed-store")
	br.CreateTopic(b, topic, 4, nil)
	base, db := couchtest.URL(b), couchtest.DBName(b)
	setup, cancelSetup := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancelSetup()
	couch, err := couchdb.New(setup, base, db)
	if err != nil {
		b.Fatal(err)
	}
	deleteDesignDocs(setup, b, base, db)
	defer couchtest.DeleteDB(context.Background(), base, db) //nolint:errcheck // best effort: frees the test server's memory
	opts := []kafkastore.Option{kafkastore.WithBrokers(br.Addr()), kafkastore.WithTopic(topic), kafkastore.WithLogger(persisterTestLogger())}
	if spooled {
		opts = append(opts, kafkastore.WithSpool(b.TempDir()))
	}
	pub, err := kafkastore.New(memory.New(), opts...)
	if err != nil {
		b.Fatal(err)
	}
	defer pub.Close()
	p := benchPersister(b, br, couch, topic)
	stop := runPersister(b, p)
	defer stop()
	waitUntil(b, 30*time.Second, "the persister to join", func() bool { return len(p.Stats().Partitions) == 4 })
	cost = measure(b, n, func() {
		start := time.Now()
		stored = measure(b, n, func() {
			res, err := pub.StoreBatch(context.Background(), as, store.UserContext{})
			if err != nil {
				b.Fatal(err)
			}
			for _, r := range res {
				if r.Err != nil {
					b.Fatal(r.Err)
				}
			}
		})
		waitDrained(b, p, n, start)
	})
	return cost, stored
}

// drainActivation is an activation of the drain benchmarks: two log lines
// and a random id, as OpenWhisk's (see BenchmarkPersisterDrain).
func drainActivation() *store.Activation {
	a := activationtest.New("guest")
	a.ActivationID = randomActivationID()
	a.Logs = []string{"2024-01-01T00:00:00.000Z stdout: hello", "2024-01-01T00:00:00.001Z stdout: world"}
	return a
}

// waitDrained returns once p has taken n records.
func waitDrained(b *testing.B, p *Persister, n int, start time.Time) {
	for {
		s := p.Stats()
		if s.Persisted+s.Conflicts >= int64(n) {
			break
		}
		if s.DeadLettered > 0 || time.Since(start) > 10*time.Minute {
			b.Fatalf("drain stuck: %+v", s)
		}
		// Stats copies every partition's state under its lock: polled
		// every 2 ms it took 5% of the process's CPU from the drain it
		// measures. 20 ms is 0.1% of a 100,000-record drain.
		time.Sleep(20 * time.Millisecond)
	}
}

// randomActivationID is an id as OpenWhisk's ActivationId.generate makes
// them: a random (version 4) UUID without its dashes.
func randomActivationID() string {
	var b [16]byte
	_, _ = crand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return hex.EncodeToString(b[:])
}

// deleteDesignDocs removes the design documents couchdb.New installed.
func deleteDesignDocs(ctx context.Context, b *testing.B, base, db string) {
	b.Helper()
	for _, id := range couchdb.DesignDocs() {
		path := "/" + db + "/" + id
		status, body, err := couchtest.Do(ctx, http.MethodGet, base, path, nil)
		if err != nil || status != http.StatusOK {
			b.Fatalf("GET %s: %d %s %v", path, status, body, err)
		}
		var doc struct {
			Rev string `json:"_rev"`
		}
		if err := json.Unmarshal(body, &doc); err != nil {
			b.Fatal(err)
		}
		if status, body, err := couchtest.Do(ctx, http.MethodDelete, base, path+"?rev="+doc.Rev, nil); err != nil || status != http.StatusOK {
			b.Fatalf("DELETE %s: %d %s %v", path, status, body, err)
		}
	}
}

func bulkDocsConcurrently(b *testing.B, base, db string, docs [][]byte, per, workers int) {
	b.Helper()
	chunks := make(chan [][]byte)
	errs := make(chan error, workers)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for c := range chunks {
				if err := couchtest.BulkDocs(context.Background(), base, db, c); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	for len(docs) > 0 {
		k := min(per, len(docs))
		chunks <- docs[:k]
		docs = docs[k:]
	}
	close(chunks)
	wg.Wait()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
}
