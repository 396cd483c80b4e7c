package elasticsearch_test

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/go-whisk/activationstore/codec"
	"github.com/go-whisk/activationstore/internal/activationtest"
	"github.com/go-whisk/activationstore/internal/kafkatest"
	"github.com/go-whisk/activationstore/internal/searchtest"
	"github.com/go-whisk/activationstore/kafkastore"
	"github.com/go-whisk/activationstore/kafkastore/persister"
	"github.com/go-whisk/activationstore/primary/elasticsearch"
	"github.com/go-whisk/activationstore/store"
)

// BenchmarkPersisterDrain measures how fast a persister with default
// batching drains a backlog into the server, against two baselines of the
// same run:
//
//   - bulk: the same documents sent straight to _bulk ("create" actions),
//     500 a request, 4 requests at once (the persister's defaults): the
//     ceiling;
//   - single: a persister writing one record at a time (WithBatch(1, …),
//     WithWriteConcurrency(1)), on the first 500 records.
//
// The backlog is 20,000 records (4,000 with -short), on the in-process
// Kafka broker (or KAFKATEST=apache). Run with -benchtime=1x.
func BenchmarkPersisterDrain(b *testing.B) {
	n := 20_000
	if testing.Short() {
		n = 4_000
	}
	const singleN = 500
	srv := searchtest.Start(b)
	br := kafkatest.Start(b)
	topic := kafkatest.Topic(b, "completed-others")
	singleTopic := kafkatest.Topic(b, "completed-single")
	br.CreateTopic(b, topic, 4, nil)
	br.CreateTopic(b, singleTopic, 4, nil)

	as := make([]*store.Activation, n)
	msgs := make([]kafka.Message, n)
	for i := range as {
		as[i] = activationtest.New("guest")
		as[i].Logs = []string{"2024-01-01T00:00:00.000Z stdout: hello", "2024-01-01T00:00:00.001Z stdout: world"}
		v, err := codec.MarshalResultMessage(codec.TransactionID{ID: "sid_bench", Start: time.Now()}, as[i])
		if err != nil {
			b.Fatal(err)
		}
		msgs[i] = kafka.Message{Key: []byte(as[i].ActivationID), Value: v}
	}
	produce(b, br.Addr(), topic, msgs)
	produce(b, br.Addr(), singleTopic, msgs[:singleN])
	typed := strings.HasPrefix(string(srv.Version()), "elasticsearch-6")

	// Warm the server up (JIT, index creation) on a throwaway index, so
	// that the first measurement is not penalised.
	warm := strings.ReplaceAll(srv.IndexPrefix(b)+"%s", "%s", "guest")
	warmStore, err := elasticsearch.New(context.Background(), srv.URL(), elasticsearch.WithIndexPattern(strings.TrimSuffix(warm, "guest")+"%s"))
	if err != nil {
		b.Fatal(err)
	}
	_ = warmStore.Close()
	rawBulk(b, srv.URL(), warm, typed, as[:min(n, 4000)], 500, 4)

	var bulkRate, persistRate, singleRate float64
	for i := 0; i < b.N; i++ {
		pattern := srv.IndexPrefix(b) + "%s"
		// The template is the persister's: install it the same way.
		es, err := elasticsearch.New(context.Background(), srv.URL(), elasticsearch.WithIndexPattern(pattern))
		if err != nil {
			b.Fatal(err)
		}
		index := strings.ReplaceAll(pattern, "%s", "guest")
		start := time.Now()
		rawBulk(b, srv.URL(), index, typed, as, 500, 4)
		bulk := float64(n) / time.Since(start).Seconds()
		_ = es.Close()

		persist := drainRate(b, srv, br, topic, n)
		single := drainRate(b, srv, br, singleTopic, singleN, persister.WithBatch(1, 4<<20, 0), persister.WithWriteConcurrency(1))
		b.Logf("iteration %d (%s): bulk %.0f/s, persister %.0f/s, single %.0f/s", i, srv.Version(), bulk, persist, single)
		bulkRate, persistRate, singleRate = bulkRate+bulk, persistRate+persist, singleRate+single
	}
	bulkRate /= float64(b.N)
	persistRate /= float64(b.N)
	singleRate /= float64(b.N)
	b.ReportMetric(persistRate, "persisted/s")
	b.ReportMetric(bulkRate, "bulk/s")
	b.ReportMetric(singleRate, "single/s")
	b.ReportMetric(persistRate/bulkRate, "ratio_to_bulk")
	b.ReportMetric(persistRate/singleRate, "x_single")
}

func produce(b *testing.B, addr, topic string, msgs []kafka.Message) {
	b.Helper()
	tr := &kafka.Transport{MetadataTTL: time.Second}
	defer tr.CloseIdleConnections()
	w := &kafka.Writer{Addr: kafka.TCP(addr), Topic: topic, Transport: tr, BatchSize: 1000, BatchBytes: 1 << 20,
		BatchTimeout: time.Millisecond, RequiredAcks: kafka.RequireAll, Balancer: &kafka.RoundRobin{}, Compression: kafka.Lz4}
	defer w.Close()
	for len(msgs) > 0 {
		k := min(len(msgs), 5000)
		if err := w.WriteMessages(context.Background(), msgs[:k]...); err != nil {
			b.Fatal(err)
		}
		msgs = msgs[k:]
	}
}

// drainRate runs a persister (fresh group, fresh indices) until it has
// taken every one of the n records of topic, and returns records per second.
func drainRate(b *testing.B, srv *searchtest.Server, br *kafkatest.Broker, topic string, n int, opts ...persister.Option) float64 {
	b.Helper()
	es, err := elasticsearch.New(context.Background(), srv.URL(), elasticsearch.WithIndexPattern(srv.IndexPrefix(b)+"%s"))
	if err != nil {
		b.Fatal(err)
	}
	defer es.Close()
	p, err := persister.New(es, append([]persister.Option{
		kafkastore.WithBrokers(br.Addr()),
		persister.WithGroupID(kafkatest.Topic(b, "bench")),
		persister.WithDeadLetterTopic(kafkatest.Topic(b, "dlq")),
		persister.WithTopicPattern(regexp.MustCompile("^" + regexp.QuoteMeta(topic) + "$")),
		persister.WithGroupTimeouts(3*time.Second, 3*time.Second, 100*time.Millisecond),
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
		time.Sleep(2 * time.Millisecond)
	}
	elapsed := time.Since(start)
	cancel()
	if err := <-done; err != nil {
		b.Fatal(err)
	}
	return float64(n) / elapsed.Seconds()
}

// rawBulk sends the documents of as to index with _bulk create actions,
// per documents a request, workers requests at once.
func rawBulk(b *testing.B, base, index string, typed bool, as []*store.Activation, per, workers int) {
	b.Helper()
	var bodies [][]byte
	now := time.Now()
	for len(as) > 0 {
		k := min(per, len(as))
		var buf bytes.Buffer
		for _, a := range as[:k] {
			doc, err := codec.MarshalElasticsearchDocument(a, now)
			if err != nil {
				b.Fatal(err)
			}
			typ := ""
			if typed {
				typ = `"_type":"_doc",`
			}
			fmt.Fprintf(&buf, `{"create":{"_index":%q,%s"_id":%q}}`+"\n", index, typ, a.DocID())
			buf.Write(doc)
			buf.WriteByte('\n')
		}
		bodies = append(bodies, buf.Bytes())
		as = as[k:]
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: workers}}
	defer client.CloseIdleConnections()
	work := make(chan []byte)
	errs := make(chan error, workers)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for body := range work {
				resp, err := client.Post(base+"/_bulk", "application/x-ndjson", bytes.NewReader(body))
				if err != nil {
					errs <- err
					return
				}
				var reply bytes.Buffer
				_, _ = reply.ReadFrom(resp.Body)
				_ = resp.Body.Close()
				if resp.StatusCode != http.StatusOK || bytes.Contains(reply.Bytes()[:min(reply.Len(), 64)], []byte(`"errors":true`)) {
					errs <- fmt.Errorf("_bulk: HTTP %d: %.300s", resp.StatusCode, reply.String())
					return
				}
			}
		})
	}
	for _, body := range bodies {
		work <- body
	}
	close(work)
	wg.Wait()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
}
