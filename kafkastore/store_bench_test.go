package kafkastore_test

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/go-whisk/activationstore/codec"
	"github.com/go-whisk/activationstore/internal/activationtest"
	"github.com/go-whisk/activationstore/internal/couchtest"
	"github.com/go-whisk/activationstore/internal/kafkatest"
	"github.com/go-whisk/activationstore/kafkastore"
	"github.com/go-whisk/activationstore/primary/couchdb"
	"github.com/go-whisk/activationstore/primary/memory"
	"github.com/go-whisk/activationstore/store"
)

// The benchmarks put kafkastore.Store beside baselines that publish the
// same bytes with the same durability (acks=all, each caller waiting for
// its record) on a topic and a connection of their own, in the same run,
// taking turns so that the machine's drifting load falls on all alike.
// Each runs against kfake (in process) and real Apache Kafka (one broker
// per test binary), as sub-benchmarks kfake and apache:
//
//	go test ./kafkastore -run '^$' -bench 'Store(Latency|Throughput)' -benchtime 2000x
//
// The publishers, by the names in the metrics:
//
//	store   kafkastore.Store, default options (no linger)
//	raw1ns  a kafka-go Writer configured as Store configures its own, BatchTimeout 1ns
//	raw1ms  the same with BatchTimeout 1ms, the usual hand tuning (the 1s default is unusable)
//	franz   a franz-go client, ProduceSync per record, linger 0 (what the caller sees
//	        of Store's), acks=all, its default idempotent producer
//
// Ratios are the Store's figure over the baseline's: for latency lower is
// better, for records/s higher is. The store/raw ratios are the cost of
// validation, encoding, headers and bookkeeping.

// publisher publishes record i of those made for it up front.
type publisher struct {
	name    string
	publish func(ctx context.Context, i int) error
}

// publishers sets up the Store and its Kafka baselines on broker, each on
// a topic of its own with n records to publish, warmed up (metadata,
// connections).
func publishers(b *testing.B, broker *kafkatest.Broker, n int) []publisher {
	ctx := context.Background()
	s := benchStore(b, broker)
	if _, err := s.Store(ctx, activationtest.New("guest"), store.UserContext{}); err != nil {
		b.Fatal(err)
	}
	as := activations(b, n)
	pubs := []publisher{{"store", func(ctx context.Context, i int) error {
		_, err := s.Store(ctx, as[i], store.UserContext{})
		return err
	}}}
	for _, v := range []struct {
		name         string
		batchTimeout time.Duration
	}{{"raw1ns", time.Nanosecond}, {"raw1ms", time.Millisecond}} {
		w, msgs := rawSetup(b, broker, v.batchTimeout, n)
		pubs = append(pubs, publisher{v.name, func(ctx context.Context, i int) error { return w.WriteMessages(ctx, msgs[i]) }})
	}
	cl, recs := franzSetup(b, broker, n)
	pubs = append(pubs, publisher{"franz", func(ctx context.Context, i int) error { return cl.ProduceSync(ctx, recs[i]).FirstErr() }})
	return pubs
}

// rawWriter is kafka-go configured by hand as Store configures it, with
// the given BatchTimeout.
func rawWriter(b testing.TB, broker *kafkatest.Broker, topic string, batchTimeout time.Duration) *kafka.Writer {
	w := &kafka.Writer{
		Addr:         kafka.TCP(broker.Addrs()...),
		Topic:        topic,
		Balancer:     &kafka.RoundRobin{},
		BatchTimeout: batchTimeout,
		BatchSize:    1000,
		BatchBytes:   kafkastore.DefaultMaxRequestSize,
		RequiredAcks: kafka.RequireAll,
		Transport:    &kafka.Transport{},
	}
	b.Cleanup(func() { w.Close() })
	return w
}

// rawMessage is what Store publishes for a, encoded once up front.
func rawMessage(b testing.TB, a *store.Activation) kafka.Message {
	v, err := codec.MarshalResultMessage(codec.TransactionID{ID: "sid_bench", Start: time.Now()}, a)
	if err != nil {
		b.Fatal(err)
	}
	return kafka.Message{Key: []byte(a.ActivationID), Value: v, Headers: []kafka.Header{
		{Key: kafkastore.HeaderContentType, Value: []byte(kafkastore.ContentTypeResultMessage)},
		{Key: kafkastore.HeaderNamespace, Value: []byte(a.Namespace)},
		{Key: kafkastore.HeaderActivationID, Value: []byte(a.ActivationID)},
	}}
}

// rawSetup returns a raw writer on a fresh topic, warmed up, and n
// messages to write with it.
func rawSetup(b *testing.B, broker *kafkatest.Broker, batchTimeout time.Duration, n int) (*kafka.Writer, []kafka.Message) {
	topic := kafkatest.Topic(b, "completed")
	broker.CreateTopic(b, topic, kafkastore.DefaultTopicPartitions, nil)
	w := rawWriter(b, broker, topic, batchTimeout)
	msgs := make([]kafka.Message, n)
	for i, a := range activations(b, n) {
		msgs[i] = rawMessage(b, a)
	}
	if err := w.WriteMessages(context.Background(), rawMessage(b, activationtest.New("guest"))); err != nil {
		b.Fatal(err)
	}
	return w, msgs
}

// franzSetup returns a franz-go client producing to a fresh topic, warmed
// up, and n records to produce with it: the same bytes as rawMessage.
func franzSetup(b *testing.B, broker *kafkatest.Broker, n int) (*kgo.Client, []*kgo.Record) {
	topic := kafkatest.Topic(b, "completed")
	broker.CreateTopic(b, topic, kafkastore.DefaultTopicPartitions, nil)
	cl, err := kgo.NewClient(
		kgo.SeedBrokers(broker.Addrs()...),
		kgo.DefaultProduceTopic(topic),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.ProducerLinger(0),
	)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(cl.Close)
	record := func(a *store.Activation) *kgo.Record {
		m := rawMessage(b, a)
		r := &kgo.Record{Key: m.Key, Value: m.Value}
		for _, h := range m.Headers {
			r.Headers = append(r.Headers, kgo.RecordHeader{Key: h.Key, Value: h.Value})
		}
		return r
	}
	recs := make([]*kgo.Record, n)
	for i, a := range activations(b, n) {
		recs[i] = record(a)
	}
	if err := cl.ProduceSync(context.Background(), record(activationtest.New("guest"))).FirstErr(); err != nil {
		b.Fatal(err)
	}
	return cl, recs
}

func benchStore(b *testing.B, broker *kafkatest.Broker, opts ...kafkastore.Option) *kafkastore.Store {
	topic := kafkatest.Topic(b, "completed")
	all := append([]kafkastore.Option{kafkastore.WithBrokers(broker.Addrs()...), kafkastore.WithTopic(topic)}, opts...)
	s, err := kafkastore.New(memory.New(), all...)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	return s
}

// activations returns n distinct activations, made before the timer runs.
func activations(b testing.TB, n int) []*store.Activation {
	as := make([]*store.Activation, n)
	for i := range as {
		as[i] = activationtest.New("guest")
	}
	return as
}

// BenchmarkStoreLatency: one caller, one record at a time; each publisher
// publishes record i in turn, a different one first each time. Metrics:
// p50 and p99 of each in µs, and the Store's p50 over each baseline's.
func BenchmarkStoreLatency(b *testing.B) {
	kafkatest.RunBrokers(b, func(b *testing.B, broker *kafkatest.Broker) {
		ctx := context.Background()
		pubs := publishers(b, broker, b.N)
		lat := make([][]time.Duration, len(pubs))
		b.ResetTimer()
		for i := range b.N {
			for k := range pubs {
				j := (i + k) % len(pubs)
				t0 := time.Now()
				if err := pubs[j].publish(ctx, i); err != nil {
					b.Fatalf("%s: %v", pubs[j].name, err)
				}
				lat[j] = append(lat[j], time.Since(t0))
			}
		}
		b.StopTimer()
		p50 := make([]float64, len(pubs))
		for j, p := range pubs {
			slices.Sort(lat[j])
			p50[j] = quantileMicros(lat[j], 0.50)
			b.ReportMetric(p50[j], p.name+"-p50-µs")
			b.ReportMetric(quantileMicros(lat[j], 0.99), p.name+"-p99-µs")
		}
		for j := 1; j < len(pubs); j++ {
			b.ReportMetric(p50[0]/p50[j], "p50-store/"+pubs[j].name)
		}
		b.ReportMetric(0, "ns/op")
	})
}

const benchCallers = 64

// BenchmarkStoreThroughput: 64 concurrent callers. Metrics: records/s of
// each publisher, and the Store's over each baseline's.
func BenchmarkStoreThroughput(b *testing.B) {
	kafkatest.RunBrokers(b, func(b *testing.B, broker *kafkatest.Broker) {
		reportThroughput(b, publishers(b, broker, b.N))
	})
}

// BenchmarkStoreVersusCouchDB: what callers gain by publishing instead of
// writing each document to CouchDB (the test server: PouchDB, or
// COUCHDB_URL), 64 concurrent callers each.
func BenchmarkStoreVersusCouchDB(b *testing.B) {
	kafkatest.RunBrokers(b, func(b *testing.B, broker *kafkatest.Broker) {
		s := benchStore(b, broker)
		as := activations(b, b.N)
		cctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		db, err := couchdb.New(cctx, couchtest.URL(b), couchtest.DBName(b))
		if err != nil {
			b.Fatal(err)
		}
		docs := activations(b, b.N)
		reportThroughput(b, []publisher{
			{"store", func(ctx context.Context, i int) error {
				_, err := s.Store(ctx, as[i], store.UserContext{})
				return err
			}},
			{"couchdb", func(ctx context.Context, i int) error {
				_, err := db.Store(ctx, docs[i], store.UserContext{})
				return err
			}},
		})
	})
}

// reportThroughput has every publisher publish its b.N records from
// benchCallers goroutines, in rounds where they take turns, and reports
// each one's records/s and the first one's over each other's.
func reportThroughput(b *testing.B, pubs []publisher) {
	const rounds = 8
	busy := make([]time.Duration, len(pubs))
	b.ResetTimer()
	for r := range rounds {
		lo, hi := r*b.N/rounds, (r+1)*b.N/rounds
		for k := range pubs {
			j := (r + k) % len(pubs)
			busy[j] += publishConcurrently(b, pubs[j], benchCallers, lo, hi, nil)
		}
	}
	b.StopTimer()
	rate := make([]float64, len(pubs))
	for j, p := range pubs {
		rate[j] = float64(b.N) / busy[j].Seconds()
		b.ReportMetric(rate[j], p.name+"-records/s")
	}
	for j := 1; j < len(pubs); j++ {
		b.ReportMetric(rate[0]/rate[j], pubs[0].name+"/"+pubs[j].name)
	}
	b.ReportMetric(0, "ns/op")
}

// publishConcurrently publishes records lo to hi-1 with p from callers
// goroutines and returns how long they took. With lat, record i's
// latency goes to lat[i].
func publishConcurrently(b *testing.B, p publisher, callers, lo, hi int, lat []time.Duration) time.Duration {
	ctx := context.Background()
	var next atomic.Int64
	next.Store(int64(lo))
	var wg sync.WaitGroup
	errs := make(chan error, callers)
	start := time.Now()
	for range callers {
		wg.Go(func() {
			for i := int(next.Add(1) - 1); i < hi; i = int(next.Add(1) - 1) {
				t0 := time.Now()
				if err := p.publish(ctx, i); err != nil {
					errs <- err
					return
				}
				if lat != nil {
					lat[i] = time.Since(t0)
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	close(errs)
	for err := range errs {
		b.Fatalf("%s: %v", p.name, err)
	}
	return elapsed
}

// quantileMicros is the q quantile of sorted, in µs.
func quantileMicros(sorted []time.Duration, q float64) float64 {
	return float64(sorted[int(q*float64(len(sorted)-1))]) / 1e3
}

// sizedActivations returns n distinct activations whose records, as Store
// encodes them (the value of the Kafka record), are size bytes: the
// result carries the padding.
func sizedActivations(b testing.TB, n, size int) []*store.Activation {
	as := activations(b, n)
	base := len(rawMessage(b, as[0]).Value)
	for _, a := range as {
		pad := size - base
		for range 4 { // the encoding's length is linear in the padding's
			a.Response.Result = json.RawMessage(`{"pad":"` + strings.Repeat("x", max(pad, 0)) + `"}`)
			d := size - len(rawMessage(b, a).Value)
			if d == 0 || pad+d < 0 {
				break
			}
			pad += d
		}
	}
	return as
}
