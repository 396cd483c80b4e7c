package losstest

import (
	"context"
	"os"
	"regexp"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"runtime/pprof"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/go-whisk/activationstore/internal/kafkatest"
	"github.com/go-whisk/activationstore/internal/testvolume"
	"github.com/go-whisk/activationstore/kafkastore"
	"github.com/go-whisk/activationstore/kafkastore/persister"
	"github.com/go-whisk/activationstore/store"
)

// A backlog drained under an in-flight cap of 8 MiB, through a primary
// that lets the budget fill before each write, once per compression codec: the live heap grows by no more than
// the cap plus the overhead WithMaxInFlightBytes documents per assigned
// partition for the codec, and the persister's own account never passes
// the cap.
//
// Set LOSSTEST_HEAPPROFILE=<prefix> to write a heap profile at each new
// peak, to <prefix>.<subtest>.
func TestHeapBoundedWhileDraining(t *testing.T) {
	const mib = 1 << 20
	for _, c := range []struct {
		name string
		comp kafka.Compression
		// buffers is the codec's decompression buffers per partition,
		// as WithMaxInFlightBytes documents them.
		buffers int64
		// java: the records come from Kafka's Java producer
		// (kafka-console-producer) rather than kafka-go's.
		java bool
	}{
		{"uncompressed", 0, 0, false},
		{"gzip", kafka.Gzip, 0, false},
		{"snappy", kafka.Snappy, 0, false},
		// kafka-go's producer declares 4 MiB blocks: the reader holds a
		// block and a compressed block of that size.
		{"lz4", kafka.Lz4, 8 * mib, false},
		// Java producers declare 64 KiB blocks (KafkaLZ4BlockOutputStream):
		// a block and a compressed block, 128 KiB.
		{"lz4-java", kafka.Lz4, 128 << 10, true},
		{"zstd", kafka.Zstd, 0, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			produce := func(t *testing.T, addr, topic string, msgs []kafka.Message) {
				// Compressed: batches of 100 records, ~45 KiB before
				// compression (Java producers' batch.size is 16 KiB): a
				// reader decompresses a whole batch at a time.
				ProduceCompressed(t, addr, topic, msgs, c.comp)
			}
			if c.java {
				produce = func(t *testing.T, addr, topic string, msgs []kafka.Message) {
					ProduceJava(t, addr, topic, msgs, c.comp)
				}
			}
			heapBounded(t, c.comp, c.buffers, produce)
		})
	}
}

func heapBounded(t *testing.T, comp kafka.Compression, codecBuffers int64, produce func(t *testing.T, addr, topic string, msgs []kafka.Message)) {
	const (
		partitions  = 4
		inFlightCap = 8 << 20
		// Beyond the cap: the records' heap runs up to a third above the
		// weight charged for them (measured with these ~450-byte records:
		// 10.5 MiB at a full 8 MiB budget); per partition, kafka-go's
		// reader state, a decompressed producer batch and the codec's
		// buffers; and what a forced GC counts live while the persister
		// allocates (below). 20 drains per codec with the other core
		// busy, and more on a quiet machine, measured at most cap + 8.1 MiB
		// without lz4 and cap + 36.7 MiB with it. Allowed: cap + 12 MiB
		// and cap + 44 MiB. lz4 from Kafka's Java producer measured cap +
		// 6.4–6.8 MiB (load average 45 on 2 cores); allowed cap + 12.5 MiB.
		slack        = inFlightCap / 2
		perPartition = 2 << 20
	)
	limit := int64(inFlightCap + slack + partitions*(perPartition+codecBuffers))
	n := testvolume.Pick(12_000, 20_000, 40_000)

	// The broker runs in a child process: the records it holds and the
	// fetch responses it builds would otherwise share the heap measured.
	addr := startBrokerProcess(t)
	topic := kafkatest.Topic(t, "completed")
	createTopic(t, addr, topic, partitions)
	run := NewRun()
	produce(t, addr, topic, Records(t, run, n))
	// Its bitmap is allocated before the baseline.
	primary := &fillFirst{Ledger: NewLedger(run, n), n: n, full: inFlightCap * 7 / 8}
	ledger := primary.Ledger
	ledger.Delay = 50 * time.Millisecond // a database's round trip

	p, err := persister.New(primary,
		kafkastore.WithBrokers(addr),
		persister.WithGroupID(kafkatest.Topic(t, "group")),
		persister.WithTopicPattern(regexp.MustCompile("^"+regexp.QuoteMeta(topic)+"$")),
		persister.WithDeadLetterTopic(kafkatest.Topic(t, "dlq")),
		persister.WithGroupTimeouts(6*time.Second, 6*time.Second, 500*time.Millisecond),
		// A batch being formed and the queue to it (as many records) hold
		// more than the cap: the cap, not the batches, bounds the records
		// in memory.
		persister.WithBatch(5000, 8<<20, 0),
		persister.WithWriteConcurrency(2),
		persister.WithMaxInFlightBytes(inFlightCap),
	)
	if err != nil {
		t.Fatalf("persister.New: %v", err)
	}
	primary.p.Store(p)

	// A forced GC counts live what is allocated while it marks: at the
	// default GOGC a busy machine (a long mark phase) let that reach the
	// size of the heap itself, and drains measured 10–25 MiB above
	// their quiet figures. At 10, GC assists hold it to about a tenth.
	defer debug.SetGCPercent(debug.SetGCPercent(10))
	runtime.GC()
	runtime.GC() // the second empties the sync.Pools the producer filled
	baseline := liveHeap()

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	start := time.Now()
	go func() { done <- p.Run(ctx) }()
	var (
		peak            uint64
		samples, atCap  int
		peakAtCapGrowth int64
		profile         = os.Getenv("LOSSTEST_HEAPPROFILE")
		fullBudget      = primary.full
	)
	for ledger.Len() < n {
		if time.Since(start) > 3*time.Minute {
			cancel()
			t.Fatalf("drained only %d of %d in 3 min", ledger.Len(), n)
		}
		time.Sleep(25 * time.Millisecond)
		inFlight := p.Stats().InFlightBytes
		runtime.GC() // the live heap: what the persister holds, not garbage
		live := liveHeap()
		samples++
		if inFlight >= fullBudget {
			atCap++
			peakAtCapGrowth = max(peakAtCapGrowth, int64(live)-int64(baseline))
		}
		if live > peak && profile != "" {
			writeHeapProfile(t, profile+"."+strings.ReplaceAll(strings.TrimPrefix(t.Name(), "TestHeapBoundedWhileDraining/"), "/", "."))
		}
		peak = max(peak, live)
	}
	took := time.Since(start)
	s := p.Stats()
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run: %v", err)
	}
	if missing, first := ledger.Missing(10); missing != 0 || ledger.popcount() != n {
		t.Errorf("%d records not persisted, first %v", missing, first)
	}
	growth := int64(peak) - int64(baseline)
	if growth > limit {
		t.Errorf("live heap grew by %.1f MiB while draining %v records, above the cap %d MiB + %d MiB + %d partitions × %.1f MiB",
			mibs(growth), comp, inFlightCap>>20, slack>>20, partitions, mibs(perPartition+codecBuffers))
	}
	if s.MaxInFlightBytes > inFlightCap {
		t.Errorf("Stats().MaxInFlightBytes = %d, above the cap %d", s.MaxInFlightBytes, inFlightCap)
	}
	// Else the cap was not what bounded the heap, and the test proves
	// nothing about it.
	if s.MaxInFlightBytes < fullBudget {
		t.Errorf("Stats().MaxInFlightBytes = %.1f MiB: the budget never filled (want ≥ %.1f MiB)",
			mibs(s.MaxInFlightBytes), mibs(fullBudget))
	}
	t.Logf("SUMMARY %s: compression=%v n=%d partitions=%d cap=%d MiB; drained in %v (%.0f/s); live heap baseline %.1f MiB, peak growth %.1f MiB = cap + %.1f MiB (%.2f MiB per partition; limit cap + %.1f MiB); peak growth at a full budget %.1f MiB (%d of %d samples); persister's accounted peak %.1f MiB; batches=%d",
		t.Name(), comp, n, partitions, inFlightCap>>20, took.Round(time.Millisecond), float64(n)/took.Seconds(),
		mibs(int64(baseline)), mibs(growth), mibs(growth-inFlightCap), mibs(growth-inFlightCap)/partitions, mibs(limit-inFlightCap),
		mibs(peakAtCapGrowth), atCap, samples, mibs(s.MaxInFlightBytes), s.Batches)
}

// liveHeap is the heap the last GC found live.
func liveHeap() uint64 {
	s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

func writeHeapProfile(t testing.TB, path string) {
	out, err := os.Create(path)
	if err != nil {
		t.Logf("heap profile: %v", err)
		return
	}
	defer out.Close()
	if err := pprof.Lookup("heap").WriteTo(out, 0); err != nil {
		t.Logf("heap profile %s: %v", path, err)
	}
}

func mibs(b int64) float64 { return float64(b) / (1 << 20) }

// fillFirst is a primary that starts each write only once the persister's
// in-flight budget is full, or every record left has been read (or after
// 15 s, lest it wait forever; lz4 under the race detector reads about 1,500
// records a second, so a budget takes seconds to fill): slower than the reading on any machine,
// however busy, so that the budget stays full and the cap is what bounds
// the records in memory.
type fillFirst struct {
	*Ledger
	p    atomic.Pointer[persister.Persister]
	n    int   // records in all
	full int64 // in-flight bytes that count as a full budget
}

// StoreBatch waits for a full budget, then stores as the ledger does.
func (f *fillFirst) StoreBatch(ctx context.Context, as []*store.Activation, uc store.UserContext) ([]store.BatchResult, error) {
	for deadline := time.Now().Add(15 * time.Second); !f.filled() && time.Now().Before(deadline); {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(2 * time.Millisecond):
		}
	}
	return f.Ledger.StoreBatch(ctx, as, uc)
}

func (f *fillFirst) filled() bool {
	p := f.p.Load()
	if p == nil {
		return false
	}
	s := p.Stats()
	if s.InFlightBytes >= f.full {
		return true
	}
	read := f.Ledger.Len() // persisted, plus read and not yet persisted
	for _, pl := range s.Partitions {
		read += pl.InFlight
	}
	return read >= f.n
}
