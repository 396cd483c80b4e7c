package kafkastore

import (
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
)

func TestPubHistogramQuantiles(t *testing.T) {
	var h pubHistogram
	for i := 1; i <= 1000; i++ {
		h.observe(time.Duration(i) * time.Microsecond)
	}
	s := h.summary()
	if s.Count != 1000 || s.Max != time.Millisecond {
		t.Fatalf("count %d max %v, want 1000 and 1ms", s.Count, s.Max)
	}
	for _, c := range []struct {
		got, want time.Duration
	}{{s.P50, 500 * time.Microsecond}, {s.P90, 900 * time.Microsecond}, {s.P99, 990 * time.Microsecond}} {
		if d := c.got - c.want; d < 0 || d > c.want/16 {
			t.Errorf("quantile %v, want within 1/16 above %v", c.got, c.want)
		}
	}
	if want := 500500 * time.Microsecond; s.Sum != want {
		t.Errorf("sum %v, want %v", s.Sum, want)
	}
	// Cumulative counts at the bounds, within 1/16 below the exact count.
	for i, bound := range LatencyBounds {
		exact := min(uint64(bound/time.Microsecond), 1000)
		if got := s.Buckets[i]; got > exact || got < exact-exact/16 {
			t.Errorf("bucket ≤ %v counts %d, want %d (within 1/16 below)", bound, got, exact)
		}
	}
}

func TestRecordBatchSizeIsWhatTheBrokerMeasures(t *testing.T) {
	// A record batch of one: 61 bytes of header, then the record.
	m := kafka.Message{Key: []byte("k"), Value: []byte("value")}
	// record: attributes 1, ts delta 1, offset delta 1, key len 1 + 1, value len 1 + 5, headers 1 = 12; length varint 1
	if got, want := recordBatchSize(&m), 61+1+12; got != want {
		t.Fatalf("recordBatchSize = %d, want %d", got, want)
	}
}
