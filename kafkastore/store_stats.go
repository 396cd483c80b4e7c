package kafkastore

import (
	"math"
	"math/bits"
	"sync/atomic"
	"time"
)

// StoreStats is a snapshot of a Store's counters since New. Every record
// passed to Store is counted once in Published, Oversize, PublishFailures
// or Invalid (or not at all when the Store is closed).
type StoreStats struct {
	// Published records were acknowledged by every in-sync replica.
	Published uint64
	// PublishFailures are records whose publish failed or timed out
	// (oversize records not included). Each one was logged.
	PublishFailures uint64
	// PublishRetries counts records sent again after a produce that failed
	// for a reason that may pass (a leader down or moved, too few
	// replicas in sync), to another partition when one could take them.
	// Each failure was logged. Such a record may be in Kafka twice.
	PublishRetries uint64
	// Oversize records were above the maximum request size, found so
	// before sending or rejected by the broker.
	Oversize uint64
	// OversizeToPrimary are the oversize records stored in the primary
	// instead (OversizeToPrimary policy).
	OversizeToPrimary uint64
	// Fallbacks are records stored in the primary because their publish
	// failed (WithFallbackToPrimary).
	Fallbacks uint64
	// PrimaryStores are successful writes to the primary, for whatever
	// reason: store-in-primary, oversize, fallback.
	PrimaryStores uint64
	// PrimaryConflicts are primary writes answered with store.ErrConflict.
	PrimaryConflicts uint64
	// PrimaryFailures are primary writes that failed otherwise. Each one
	// was logged.
	PrimaryFailures uint64
	// Invalid records were rejected by validation; nothing was written.
	Invalid uint64
	// PublishLatency summarizes the duration of successful publishes.
	PublishLatency LatencySummary
}

// LatencySummary summarizes a distribution of durations. Quantiles are
// read from a log-linear histogram: within 1/16 (6.25 %) of the true value.
type LatencySummary struct {
	Count         uint64
	P50, P90, P99 time.Duration
	Max           time.Duration
}

type storeCounters struct {
	published, publishFailures, publishRetries, oversize, oversizeToPrimary, fallbacks,
	primaryStores, primaryConflicts, primaryFailures, invalid atomic.Uint64
	publishLatency pubHistogram
}

func (c *storeCounters) snapshot() StoreStats {
	return StoreStats{
		Published:         c.published.Load(),
		PublishFailures:   c.publishFailures.Load(),
		PublishRetries:    c.publishRetries.Load(),
		Oversize:          c.oversize.Load(),
		OversizeToPrimary: c.oversizeToPrimary.Load(),
		Fallbacks:         c.fallbacks.Load(),
		PrimaryStores:     c.primaryStores.Load(),
		PrimaryConflicts:  c.primaryConflicts.Load(),
		PrimaryFailures:   c.primaryFailures.Load(),
		Invalid:           c.invalid.Load(),
		PublishLatency:    c.publishLatency.summary(),
	}
}

// pubHistogram is a lock-free log-linear histogram of durations: each
// power of two of nanoseconds is split into 16 linear sub-buckets, from
// 1 µs (2^10 ns) to 2^40 ns (18 minutes).
type pubHistogram struct {
	buckets [histPowers * histSub]atomic.Uint64
	max     atomic.Int64
}

const (
	histSubBits  = 4
	histSub      = 1 << histSubBits
	histMinPower = 10
	histPowers   = 41 - histMinPower
)

func histIndex(ns int64) int {
	if ns < 1<<histMinPower {
		return 0
	}
	p := bits.Len64(uint64(ns)) - 1 // ns in [2^p, 2^(p+1))
	if p >= histMinPower+histPowers {
		return histPowers*histSub - 1
	}
	sub := int(ns>>(p-histSubBits)) & (histSub - 1)
	return (p-histMinPower)*histSub + sub
}

// histUpper is the upper bound of bucket i.
func histUpper(i int) int64 {
	p := i/histSub + histMinPower
	sub := int64(i%histSub) + 1
	return int64(1)<<p + sub<<(p-histSubBits)
}

func (h *pubHistogram) observe(d time.Duration) {
	ns := int64(d)
	h.buckets[histIndex(ns)].Add(1)
	for {
		m := h.max.Load()
		if ns <= m || h.max.CompareAndSwap(m, ns) {
			return
		}
	}
}

func (h *pubHistogram) summary() LatencySummary {
	var counts [len(h.buckets)]uint64
	var total uint64
	for i := range h.buckets {
		counts[i] = h.buckets[i].Load()
		total += counts[i]
	}
	s := LatencySummary{Count: total, Max: time.Duration(h.max.Load())}
	if total == 0 {
		return s
	}
	quantile := func(q float64) time.Duration {
		rank := uint64(math.Ceil(q * float64(total)))
		var seen uint64
		for i, c := range counts {
			if seen += c; seen >= rank {
				return min(time.Duration(histUpper(i)), s.Max)
			}
		}
		return s.Max
	}
	s.P50, s.P90, s.P99 = quantile(0.50), quantile(0.90), quantile(0.99)
	return s
}
