package kafkastore

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/go-whisk/activationstore/codec"
	"github.com/go-whisk/activationstore/internal/activationtest"
	"github.com/go-whisk/activationstore/internal/couchtest"
	"github.com/go-whisk/activationstore/internal/kafkatest"
	"github.com/go-whisk/activationstore/primary/couchdb"
	"github.com/go-whisk/activationstore/store"
)

// BenchmarkPersisterDrain measures how fast a persister with default
// batching drains a backlog into the CouchDB test server, against two
// baselines measured in the same run:
//
//   - bulk: the same documents sent straight to _bulk_docs, 500 a request,
//     4 requests at once (the persister's defaults) — the ceiling;
//   - single: a persister writing one record at a time (WithBatch(1, …),
//     WithWriteConcurrency(1)), on the first 1,000 records.
//
// The backlog is 100,000 records, 10,000 with -short. It runs against
// kfake and real Apache Kafka (sub-benchmarks kfake and apache). Run with
// -benchtime=1x: every iteration drains the whole backlog.
func BenchmarkPersisterDrain(b *testing.B) {
	kafkatest.RunBrokers(b, benchPersisterDrain)
}

func benchPersisterDrain(b *testing.B, br *kafkatest.Broker) {
	n := 100_000
	if testing.Short() {
		n = 10_000
	}
	const singleN = 1000
	base := couchtest.URL(b)
	topic := kafkatest.Topic(b, "completed-others")
	singleTopic := kafkatest.Topic(b, "completed-single")
	br.CreateTopic(b, topic, 4, nil)
	br.CreateTopic(b, singleTopic, 4, nil)

	as := make([]*store.Activation, n)
	values := make([][]byte, n)
	docs := make([][]byte, n)
	for i := range as {
		as[i] = activationtest.New("guest")
		as[i].Logs = []string{"2024-01-01T00:00:00.000Z stdout: hello", "2024-01-01T00:00:00.001Z stdout: world"}
		values[i] = resultMessage(b, as[i])
		d, err := codec.MarshalDocument(as[i], time.Now())
		if err != nil {
			b.Fatal(err)
		}
		docs[i] = d
	}
	produceValues(b, br, topic, values...)
	produceValues(b, br, singleTopic, values[:singleN]...)

	// Warm the test server up (a node process JIT-compiles its hot paths),
	// so that the first measurement is not penalised.
	warm := couchtest.DBName(b)
	if err := couchtest.CreateDB(context.Background(), base, warm); err != nil {
		b.Fatal(err)
	}
	bulkDocsConcurrently(b, base, warm, docs[:min(n, 20_000)], 500, 4)
	_ = couchtest.DeleteDB(context.Background(), base, warm)

	var bulkRate, persistRate, singleRate float64
	for i := 0; i < b.N; i++ {
		// Ceiling: raw _bulk_docs.
		ctx := context.Background()
		db := couchtest.DBName(b) + "_bulk"
		if err := couchtest.CreateDB(ctx, base, db); err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		bulkDocsConcurrently(b, base, db, docs, 500, 4)
		bulk := float64(n) / time.Since(start).Seconds()
		_ = couchtest.DeleteDB(ctx, base, db)

		persist := drainRate(b, br, topic, n)
		single := drainRate(b, br, singleTopic, singleN, WithBatch(1, 4<<20, 0), WithWriteConcurrency(1))
		b.Logf("iteration %d: bulk %.0f/s, persister %.0f/s, single %.0f/s", i, bulk, persist, single)
		bulkRate, persistRate, singleRate = bulkRate+bulk, persistRate+persist, singleRate+single
	}
	bulkRate /= float64(b.N)
	persistRate /= float64(b.N)
	singleRate /= float64(b.N)
	b.ReportMetric(persistRate, "persisted/s")
	b.ReportMetric(bulkRate, "bulk_docs/s")
	b.ReportMetric(singleRate, "single/s")
	b.ReportMetric(persistRate/bulkRate, "ratio_to_bulk")
	b.ReportMetric(persistRate/singleRate, "x_single")
}

// drainRate runs a persister (fresh group, fresh database) until it has
// taken every one of the n records of topic, and returns records per second.
func drainRate(b *testing.B, br *kafkatest.Broker, topic string, n int, opts ...Option) float64 {
	b.Helper()
	base, db := couchtest.URL(b), couchtest.DBName(b)
	setup, cancelSetup := context.WithTimeout(context.Background(), 30*time.Second)
	couch, err := couchdb.New(setup, base, db)
	cancelSetup()
	if err != nil {
		b.Fatal(err)
	}
	defer couchtest.DeleteDB(context.Background(), base, db) //nolint:errcheck // best effort: frees the test server's memory
	p, err := NewPersister(couch, append([]Option{
		WithBrokers(br.Addr()),
		WithLogger(persisterTestLogger()),
		WithGroupID(kafkatest.Topic(b, "bench")),
		WithDeadLetterTopic(kafkatest.Topic(b, "dlq")),
		WithTopicPattern(exactTopics(topic)),
		WithGroupTimeouts(3*time.Second, 3*time.Second, 100*time.Millisecond),
	}, opts...)...)
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	start := time.Now()
	go func() { done <- p.Run(ctx) }()
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
	elapsed := time.Since(start)
	cancel()
	if err := <-done; err != nil {
		b.Fatal(err)
	}
	return float64(n) / elapsed.Seconds()
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
