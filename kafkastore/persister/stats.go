package persister

import (
	"cmp"
	"slices"
	"sync/atomic"
	"time"
)

// Stats is a snapshot of a Persister's counters. Counters are
// cumulative since New; gauges describe the moment of the call.
//
// Accounting: every record read ends in exactly one of Persisted,
// Conflicts, Skipped, StoreSkipped and DeadLettered, or is Abandoned (left
// unsettled and uncommitted on a rebalance or shutdown: the partition's
// next owner reads it again), so that, once Run has returned,
//
//	Read == Persisted + Conflicts + Skipped + StoreSkipped + DeadLettered + Abandoned
//
// and, while it runs, the difference is the records in flight. An ending
// is counted once its offset is committed; a record settled but not
// committed when the generation ends (it lies past a record abandoned
// unsettled) is counted as abandoned, as the next owner reads it again.
// So, across the persisters of a group, through rebalances and restarts,
// every record published ends once in one of the five endings, or in
// LostToRetention (deleted by Kafka unread) — unless an offset commit
// fails at a generation's end, when the records it would have committed
// end twice.
type Stats struct {
	// Read counts records read from the topics (each delivery: a record
	// read again after a rebalance counts again).
	Read int64
	// Persisted counts records written to the primary by this persister,
	// including records found already there whose earlier write, by this
	// persister or by the partition's previous owner, was abandoned
	// mid-flight and may have landed (Redelivered counts those).
	Persisted int64
	// Redelivered counts the records of Persisted found already in the
	// primary after a write of them was abandoned mid-flight.
	Redelivered int64
	// Conflicts counts records the primary had already (store.ErrConflict)
	// with no abandoned write of theirs on record: duplicates (an
	// activation published twice) and replays after a failed commit. Not
	// included in Persisted.
	Conflicts int64
	// Skipped counts records carrying no activation: CompletionMessages and
	// results shrunk to an activation id.
	Skipped int64
	// StoreSkipped counts records not stored because their writer marked
	// them with kafkastore.HeaderStoreSkip (store level or storeActivations=false).
	// Not included in Skipped.
	StoreSkipped int64
	// Abandoned counts records read and left unsettled, uncommitted, on a
	// rebalance or shutdown (or when their write kept failing until then).
	Abandoned int64
	// Retries counts failed writes to the primary that were retried.
	Retries int64
	// DeadLettered counts records published to the dead-letter topic.
	DeadLettered int64
	// DeadLetterRetries counts failed dead-letter publishes that were retried.
	DeadLetterRetries int64
	// Commits and CommitErrors count offset commits to the group.
	Commits, CommitErrors int64
	// Batches counts writes to the primary (one per batch, not per retry);
	// BatchRecords sums their records and BatchLatency their duration,
	// retries included. Divide for the averages.
	Batches      int64
	BatchRecords int64
	BatchLatency time.Duration
	// LastBatchRecords and LastBatchLatency describe the latest batch.
	LastBatchRecords int64
	LastBatchLatency time.Duration
	// InFlightBytes is the weight of records read and not yet settled;
	// MaxInFlightBytes the highest it has been. Both stay at or below the
	// WithMaxInFlightBytes cap (except for a single record above the cap).
	InFlightBytes, MaxInFlightBytes int64
	// RecordAge is how old records were when persisted: the visibility
	// lag, from publish to readable in the primary.
	RecordAge AgeHistogram
	// LostToRetention counts, per partition, the records Kafka deleted
	// before they were persisted (retention ran out while the persister
	// lagged or was down). Each loss is also logged at ERROR with its
	// offsets. Counted by the member that found it; a rebalance before the
	// next commit can make another member count the same range again.
	LostToRetention []RetentionLoss
	// Ready is Ready(); Generation the consumer group generation joined
	// last (0 before the first).
	Ready      bool
	Generation int32
	// Partitions are the partitions assigned now, sorted by topic and partition.
	Partitions []PartitionLag
}

// PartitionLag describes one assigned partition.
type PartitionLag struct {
	Topic     string
	Partition int
	// Committed is the group's committed offset (-1 when none yet).
	Committed int64
	// HighWaterMark is the partition's end offset as last seen in a fetch
	// (-1 before the first record).
	HighWaterMark int64
	// Lag is HighWaterMark minus Committed (or minus the first offset read
	// when nothing is committed yet): what a restart would read again or
	// still has to persist. 0 when unknown.
	Lag int64
	// InFlight counts records read but not settled.
	InFlight int
}

type persisterCounters struct {
	read, persisted, conflicts, skipped atomic.Int64
	redelivered, abandoned, retries     atomic.Int64
	storeSkipped                        atomic.Int64
	deadLettered, deadLetterRetries     atomic.Int64
	commits, commitErrors               atomic.Int64
	batches, batchRecords, batchNanos   atomic.Int64
	lastBatchRecords, lastBatchNanos    atomic.Int64
	generation                          atomic.Int32
	age                                 ageHistogram
}

// ended counts committed records by ending.
func (c *persisterCounters) ended(e endings) {
	c.persisted.Add(e[endPersisted] + e[endRedelivered])
	c.redelivered.Add(e[endRedelivered])
	c.conflicts.Add(e[endConflict])
	c.skipped.Add(e[endSkipped])
	c.storeSkipped.Add(e[endStoreSkipped])
	c.deadLettered.Add(e[endDeadLettered])
}

func (c *persisterCounters) batchDone(records int, d time.Duration) {
	c.batches.Add(1)
	c.batchRecords.Add(int64(records))
	c.batchNanos.Add(int64(d))
	c.lastBatchRecords.Store(int64(records))
	c.lastBatchNanos.Store(int64(d))
}

// Stats returns a snapshot of the counters and of the assigned partitions'
// lag. It is safe to call at any time, from any goroutine.
func (p *Persister) Stats() Stats {
	c := &p.stats
	used, peak := p.budget.usage()
	s := Stats{
		Read:              c.read.Load(),
		Persisted:         c.persisted.Load(),
		Redelivered:       c.redelivered.Load(),
		Abandoned:         c.abandoned.Load(),
		Conflicts:         c.conflicts.Load(),
		Skipped:           c.skipped.Load(),
		StoreSkipped:      c.storeSkipped.Load(),
		Retries:           c.retries.Load(),
		DeadLettered:      c.deadLettered.Load(),
		DeadLetterRetries: c.deadLetterRetries.Load(),
		Commits:           c.commits.Load(),
		CommitErrors:      c.commitErrors.Load(),
		Batches:           c.batches.Load(),
		BatchRecords:      c.batchRecords.Load(),
		BatchLatency:      time.Duration(c.batchNanos.Load()),
		LastBatchRecords:  c.lastBatchRecords.Load(),
		LastBatchLatency:  time.Duration(c.lastBatchNanos.Load()),
		InFlightBytes:     used,
		MaxInFlightBytes:  peak,
		RecordAge:         c.age.snapshot(),
		LostToRetention:   p.losses.snapshot(),
		Ready:             p.Ready(),
		Generation:        c.generation.Load(),
	}
	p.partsMu.Lock()
	for _, ps := range p.parts {
		s.Partitions = append(s.Partitions, ps.lag())
	}
	p.partsMu.Unlock()
	slices.SortFunc(s.Partitions, func(a, b PartitionLag) int {
		return cmp.Or(cmp.Compare(a.Topic, b.Topic), cmp.Compare(a.Partition, b.Partition))
	})
	return s
}

func (ps *persistPartition) lag() PartitionLag {
	_, committed, inFlight := ps.tracker.positions()
	l := PartitionLag{
		Topic:         ps.topic,
		Partition:     ps.partition,
		Committed:     committed,
		HighWaterMark: ps.highWaterMark.Load(),
		InFlight:      inFlight,
	}
	from := committed
	if from < 0 {
		from = ps.firstOffset.Load()
	}
	if l.HighWaterMark >= 0 && from >= 0 && l.HighWaterMark > from {
		l.Lag = l.HighWaterMark - from
	}
	return l
}
