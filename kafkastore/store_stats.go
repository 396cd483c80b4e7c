package kafkastore

import (
	"math"
	"math/bits"
	"sync/atomic"
	"time"
)

// StoreStats is a snapshot of a Store's counters since New. Every record
// passed to Store is counted once in Published, Oversize, PublishFailures
// or Invalid (or not at all when the Store is closed); with a spool, in
// Spooled instead of Published and SpoolFailures instead of
// PublishFailures.
type StoreStats struct {
	// Published records were acknowledged by every in-sync replica: with
	// a spool, those the publisher sent (of this process's Stores and
	// PublishAcks, and of earlier processes' left in the spool).
	Published uint64
	// Spooled records were fdatasynced in the spool (WithSpool).
	Spooled uint64
	// SpoolFailures are records the spool did not take (full, disk full,
	// a failed write or sync): each got a *SpoolError, or went to the
	// primary (Fallbacks).
	SpoolFailures uint64
	// SpoolLatency summarizes the duration of successful spool appends:
	// a Store's latency with a spool.
	SpoolLatency LatencySummary
	// Spool describes the spool; zero without WithSpool.
	Spool SpoolStats
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
	// PublishLatency summarizes the duration of successful publishes:
	// with a spool, from the Store to Kafka's acknowledgement.
	PublishLatency LatencySummary
}

// SpoolStats describes a Store's spool.
type SpoolStats struct {
	Dir string
	// Records and Bytes are spooled and not yet acknowledged by Kafka.
	Records, Bytes int64
	// DiskBytes is what the spool's segment files take on disk,
	// preallocation included: at most the max bytes plus one segment.
	DiskBytes int64
	Segments  int
	// OldestAge is the age of the oldest record not yet in Kafka; 0 when
	// there is none.
	OldestAge time.Duration
	// SyncLatency summarizes the spool's fdatasyncs, one per group of
	// concurrent Stores.
	SyncLatency LatencySummary
	// Replayed records were in the spool when it was opened: left by an
	// earlier process, and published by this one.
	Replayed uint64
	// TornTails, CorruptFrames and Quarantined count the damage found when
	// the spool was opened: a tail cut at a frame a crash left half
	// written, frames lost to corruption mid-file, segments copied to
	// the spool's quarantine directory for inspection.
	TornTails, CorruptFrames, Quarantined uint64
	// FullWaits are appends that waited for room; FullRejections those
	// that gave up (ErrSpoolFull).
	FullWaits, FullRejections uint64
	// WriteErrors are groups whose write or sync failed; DiskError is the
	// latest such error while no later write succeeded.
	WriteErrors uint64
	DiskError   error
	// PublishErrors are failed attempts to send spooled records to Kafka
	// (each sent again); Undeliverable are records skipped because they
	// could not be decoded, or the broker refused them as too large and
	// they carry no activation for the primary. Each was logged.
	PublishErrors, Undeliverable uint64
}

// LatencySummary summarizes a distribution of durations. Quantiles are
// read from a log-linear histogram: within 1/16 (6.25 %) of the true value.
type LatencySummary struct {
	Count         uint64
	P50, P90, P99 time.Duration
	Max           time.Duration
	// Sum is the total of the durations; Buckets count them cumulatively
	// at fixed bounds (LatencyBounds), as a Prometheus histogram does.
	Sum     time.Duration
	Buckets []uint64
}

// LatencyBounds are the upper bounds of LatencySummary.Buckets: from
// 100 µs, the fastest fdatasync, to 30 s, the longest broker request.
var LatencyBounds = []time.Duration{
	100 * time.Microsecond, 250 * time.Microsecond, 500 * time.Microsecond,
	time.Millisecond, 2500 * time.Microsecond, 5 * time.Millisecond,
	10 * time.Millisecond, 25 * time.Millisecond, 50 * time.Millisecond,
	100 * time.Millisecond, 250 * time.Millisecond, 500 * time.Millisecond,
	time.Second, 2500 * time.Millisecond, 5 * time.Second, 10 * time.Second, 30 * time.Second,
}

type storeCounters struct {
	published, publishFailures, publishRetries, oversize, oversizeToPrimary, fallbacks,
	primaryStores, primaryConflicts, primaryFailures, invalid atomic.Uint64
	spooled, spoolFailures, spoolPublishErrors, spoolUndeliverable atomic.Uint64
	publishLatency, spoolLatency, spoolSync                        pubHistogram
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
		Spooled:           c.spooled.Load(),
		SpoolFailures:     c.spoolFailures.Load(),
		SpoolLatency:      c.spoolLatency.summary(),
	}
}

// pubHistogram is a lock-free log-linear histogram of durations: each
// power of two of nanoseconds is split into 16 linear sub-buckets, from
// 1 µs (2^10 ns) to 2^40 ns (18 minutes).
type pubHistogram struct {
	buckets [histPowers * histSub]atomic.Uint64
	max     atomic.Int64
	sum     atomic.Int64
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
	h.sum.Add(ns)
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
	s := LatencySummary{Count: total, Max: time.Duration(h.max.Load()), Sum: time.Duration(h.sum.Load())}
	s.Buckets = make([]uint64, len(LatencyBounds))
	if total == 0 {
		return s
	}
	// A sub-bucket counts below a bound when its upper edge is at most
	// the bound: within 1/16 of the bound, as the quantiles.
	var below uint64
	next := 0
	for i, c := range counts {
		for next < len(LatencyBounds) && histUpper(i) > int64(LatencyBounds[next]) {
			s.Buckets[next] = below
			next++
		}
		below += c
	}
	for ; next < len(LatencyBounds); next++ {
		s.Buckets[next] = below
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
