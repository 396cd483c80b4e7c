package persister

import (
	"sync/atomic"
	"time"
)

// RecordAgeBuckets are the upper bounds of the RecordAge histogram: from a
// millisecond (persisted as soon as published) to an hour (OpenWhisk's
// retention of the completed topics).
var RecordAgeBuckets = []time.Duration{
	time.Millisecond, 2500 * time.Microsecond, 5 * time.Millisecond, 10 * time.Millisecond,
	25 * time.Millisecond, 50 * time.Millisecond, 100 * time.Millisecond, 250 * time.Millisecond,
	500 * time.Millisecond, time.Second, 2500 * time.Millisecond, 5 * time.Second, 10 * time.Second,
	30 * time.Second, time.Minute, 5 * time.Minute, 15 * time.Minute, time.Hour,
}

// AgeHistogram is how old records were when they were persisted: the time
// from the record's Kafka timestamp to the end of the write that stored it.
// It is the visibility lag users see (`wsk activation get` finding the
// record), as a Prometheus-style histogram.
type AgeHistogram struct {
	// Bounds are RecordAgeBuckets; Counts[i] counts the ages at most
	// Bounds[i] and above Bounds[i-1] (not cumulative), and the last
	// element of Counts those above every bound.
	Bounds []time.Duration
	Counts []int64
	// Count and Sum are the number of ages observed and their total.
	Count int64
	Sum   time.Duration
}

type ageHistogram struct {
	counts [19]atomic.Int64 // len(RecordAgeBuckets)+1
	count  atomic.Int64
	sum    atomic.Int64
}

func (h *ageHistogram) observe(age time.Duration) {
	age = max(age, 0) // clocks of producer and persister differ
	i := 0
	for i < len(RecordAgeBuckets) && age > RecordAgeBuckets[i] {
		i++
	}
	h.counts[i].Add(1)
	h.count.Add(1)
	h.sum.Add(int64(age))
}

func (h *ageHistogram) snapshot() AgeHistogram {
	s := AgeHistogram{Bounds: RecordAgeBuckets, Counts: make([]int64, len(h.counts))}
	for i := range h.counts {
		s.Counts[i] = h.counts[i].Load()
	}
	s.Count, s.Sum = h.count.Load(), time.Duration(h.sum.Load())
	return s
}
