package kafkastore_test

import (
	"context"
	"runtime"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/go-whisk/activationstore/codec"
	"github.com/go-whisk/activationstore/internal/activationtest"
	"github.com/go-whisk/activationstore/internal/couchtest"
	"github.com/go-whisk/activationstore/internal/kafkatest"
	"github.com/go-whisk/activationstore/kafkastore"
	"github.com/go-whisk/activationstore/primary/couchdb"
	"github.com/go-whisk/activationstore/primary/memory"
	"github.com/go-whisk/activationstore/store"
)

// The benchmarks put kafkastore.Store beside a raw kafka-go Writer with the
// same settings (linger/BatchTimeout, acks=all, a transport of its own)
// writing the same bytes, in the same run, against the in-process broker:
//
//	go test ./kafkastore -run '^$' -bench 'Store' -benchtime 2000x
//
// The ratio store/raw is the cost of validation, encoding, headers and
// bookkeeping.

// rawWriter is kafka-go configured by hand as Store configures it, with
// the given BatchTimeout: 1ns is Store's own setting (it batches above the
// Writer); 1ms is the usual hand tuning (the 1s default is unusable).
func rawWriter(b testing.TB, addr, topic string, batchTimeout time.Duration) *kafka.Writer {
	w := &kafka.Writer{
		Addr:         kafka.TCP(addr),
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

func benchStore(b *testing.B, broker *kafkatest.Broker, opts ...kafkastore.Option) *kafkastore.Store {
	topic := kafkatest.Topic(b, "completed")
	all := append([]kafkastore.Option{kafkastore.WithBrokers(broker.Addr()), kafkastore.WithTopic(topic)}, opts...)
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

func reportLatency(b *testing.B, lat []time.Duration) {
	slices.Sort(lat)
	q := func(p float64) float64 { return float64(lat[int(p*float64(len(lat)-1))]) / 1e3 }
	b.ReportMetric(q(0.50), "p50-µs")
	b.ReportMetric(q(0.99), "p99-µs")
	b.ReportMetric(0, "ns/op")
}

// rawVariants are the raw kafka-go Writers each benchmark runs beside Store.
var rawVariants = []struct {
	name         string
	batchTimeout time.Duration
}{
	{"raw-kafka-go/batchtimeout=1ns", time.Nanosecond},
	{"raw-kafka-go/batchtimeout=1ms", time.Millisecond},
}

// rawSetup returns a raw writer on a fresh topic, warmed up, and b.N
// messages to write with it.
func rawSetup(b *testing.B, broker *kafkatest.Broker, batchTimeout time.Duration) (*kafka.Writer, []kafka.Message) {
	topic := kafkatest.Topic(b, "completed")
	broker.CreateTopic(b, topic, kafkastore.DefaultTopicPartitions, nil)
	w := rawWriter(b, broker.Addr(), topic, batchTimeout)
	msgs := make([]kafka.Message, b.N)
	for i, a := range activations(b, b.N) {
		msgs[i] = rawMessage(b, a)
	}
	warm := rawMessage(b, activationtest.New("guest"))
	if err := w.WriteMessages(context.Background(), warm); err != nil { // metadata, connections
		b.Fatal(err)
	}
	return w, msgs
}

// BenchmarkStoreLatency: one caller, one Store at a time.
func BenchmarkStoreLatency(b *testing.B) {
	broker := kafkatest.Start(b)
	ctx := context.Background()
	sequential := func(b *testing.B, op func(i int) error) {
		lat := make([]time.Duration, 0, b.N)
		b.ResetTimer()
		for i := range b.N {
			t0 := time.Now()
			if err := op(i); err != nil {
				b.Fatal(err)
			}
			lat = append(lat, time.Since(t0))
		}
		b.StopTimer()
		reportLatency(b, lat)
	}

	b.Run("kafkastore", func(b *testing.B) {
		s := benchStore(b, broker)
		as := activations(b, b.N)
		sequential(b, func(i int) error {
			_, err := s.Store(ctx, as[i], store.UserContext{})
			return err
		})
	})
	for _, v := range rawVariants {
		b.Run(v.name, func(b *testing.B) {
			w, msgs := rawSetup(b, broker, v.batchTimeout)
			sequential(b, func(i int) error { return w.WriteMessages(ctx, msgs[i]) })
		})
	}
}

const benchCallers = 64

// runCallers runs op b.N times over benchCallers goroutines and reports records/s.
func runCallers(b *testing.B, op func(i int) error) {
	procs := runtime.GOMAXPROCS(0)
	b.SetParallelism((benchCallers + procs - 1) / procs) // RunParallel starts parallelism × GOMAXPROCS goroutines
	var next atomic.Int64
	start := time.Now()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := op(int(next.Add(1) - 1)); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "records/s")
	b.ReportMetric(0, "ns/op")
}

// BenchmarkStoreThroughput: 64 concurrent callers.
func BenchmarkStoreThroughput(b *testing.B) {
	broker := kafkatest.Start(b)
	ctx := context.Background()

	b.Run("kafkastore", func(b *testing.B) {
		s := benchStore(b, broker)
		as := activations(b, b.N)
		runCallers(b, func(i int) error {
			_, err := s.Store(ctx, as[i], store.UserContext{})
			return err
		})
	})
	for _, v := range rawVariants {
		b.Run(v.name, func(b *testing.B) {
			w, msgs := rawSetup(b, broker, v.batchTimeout)
			runCallers(b, func(i int) error { return w.WriteMessages(ctx, msgs[i]) })
		})
	}
}

// BenchmarkStoreVersusCouchDB: what callers gain by publishing instead of
// writing each document to CouchDB (the test server: PouchDB, or
// COUCHDB_URL) — 64 concurrent callers each.
func BenchmarkStoreVersusCouchDB(b *testing.B) {
	broker := kafkatest.Start(b)
	ctx := context.Background()
	b.Run("kafkastore", func(b *testing.B) {
		s := benchStore(b, broker)
		as := activations(b, b.N)
		runCallers(b, func(i int) error {
			_, err := s.Store(ctx, as[i], store.UserContext{})
			return err
		})
	})
	b.Run("couchdb-direct", func(b *testing.B) {
		cctx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		db, err := couchdb.New(cctx, couchtest.URL(b), couchtest.DBName(b))
		if err != nil {
			b.Fatal(err)
		}
		as := activations(b, b.N)
		runCallers(b, func(i int) error {
			_, err := db.Store(ctx, as[i], store.UserContext{})
			return err
		})
	})
}
