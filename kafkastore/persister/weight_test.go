package persister

import (
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/go-whisk/activationstore/internal/activationtest"
)

// The in-flight budget charges each record at least the heap it takes
// while in flight: its kafka.Message as a reader returns it, the decoded
// activation, the persistRecord. Measured over many records of each size,
// small (a bare result) to larger (logs).
func TestPersistRecordWeight(t *testing.T) {
	p := &Persister{}
	for _, logs := range []int{0, 2, 40, 1000} {
		n := 3000
		if logs > 100 {
			n = 200
		}
		sample := activationtest.New("guest")
		sample.Logs = nil
		for i := range logs {
			sample.Logs = append(sample.Logs, strings.Repeat("x", 60)+string(rune('a'+i%26)))
		}
		size := len(resultMessage(t, sample))
		var weight int64
		recs := make([]*persistRecord, 0, n)
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		for range n {
			a := activationtest.New("guest")
			a.Logs = sample.Logs[:len(sample.Logs):len(sample.Logs)]
			v := resultMessage(t, a)
			// As kafka-go returns it: its own copy of the value, the
			// topic, a key (the activation id, as Store publishes).
			m := kafka.Message{Topic: "completed-others", Partition: 3, Offset: 1 << 20,
				Key: []byte(a.ActivationID), Value: append([]byte(nil), v...), Time: time.Now()}
			r := &persistRecord{msg: m}
			if !p.classify(r) || r.act == nil {
				t.Fatalf("classify failed: %v", r.deadErr)
			}
			weight += persistRecordWeight(&r.msg)
			recs = append(recs, r)
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		heap := float64(after.HeapAlloc-before.HeapAlloc) / float64(n)
		charged := float64(weight) / float64(n)
		t.Logf("records of %d bytes (%d log lines): %.0f bytes of heap each, charged %.0f (%.0f%%)", size, logs, heap, charged, 100*charged/heap)
		if charged < heap {
			t.Errorf("records of %d bytes take %.0f bytes of heap each, but are charged %.0f", size, heap, charged)
		}
		runtime.KeepAlive(recs)
	}
}
