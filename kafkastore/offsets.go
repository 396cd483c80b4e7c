package kafkastore

import (
	"sort"
	"sync"
)

// offsetTracker computes what may be committed for one partition: the
// offset after the longest prefix of read records that are all settled
// (persisted, found already persisted, skipped or dead-lettered). Records
// settle in any order — batches run concurrently and retry — but the
// commit never passes a record still in flight, so a crash at any moment
// loses nothing.
//
// Records are added in the order they are read, which is increasing offset
// order; offsets may have gaps (compaction, transaction markers), so the
// prefix is over records read, not over offset numbers.
type offsetTracker struct {
	mu      sync.Mutex
	pending []trackedOffset // from head on: read, in read order
	head    int
	// next is the offset to commit: every read record below it is settled.
	// -1 until known (no record read and no committed offset).
	next int64
	// committed is the last offset committed to the group; -1 if none.
	committed int64
}

type trackedOffset struct {
	offset  int64
	settled bool
}

// newOffsetTracker starts at the group's committed offset, or -1 when the
// group has none (the partition is read from its earliest offset).
func newOffsetTracker(committed int64) *offsetTracker {
	if committed < 0 {
		committed = -1
	}
	return &offsetTracker{next: committed, committed: committed}
}

// add registers a record just read. Offsets must increase.
func (t *offsetTracker) add(offset int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.head == len(t.pending) {
		// Nothing pending: everything before this record is settled
		// (or was never ours to read).
		t.next = offset
		t.pending, t.head = t.pending[:0], 0
	}
	t.pending = append(t.pending, trackedOffset{offset: offset})
}

// settle marks a record settled and advances the watermark over the
// settled prefix. It reports whether the watermark moved.
func (t *offsetTracker) settle(offset int64) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	live := t.pending[t.head:]
	i := sort.Search(len(live), func(i int) bool { return live[i].offset >= offset })
	if i == len(live) || live[i].offset != offset || live[i].settled {
		return false // not ours (an abandoned generation's record) or settled twice
	}
	live[i].settled = true
	if i != 0 {
		return false
	}
	for t.head < len(t.pending) && t.pending[t.head].settled {
		t.next = t.pending[t.head].offset + 1
		t.head++
	}
	if t.head == len(t.pending) {
		t.pending, t.head = t.pending[:0], 0
	} else if t.head > 1024 && t.head > len(t.pending)/2 {
		n := copy(t.pending, t.pending[t.head:])
		t.pending, t.head = t.pending[:n], 0
	}
	return true
}

// toCommit returns the offset to commit and true when it is past the last
// committed one.
func (t *offsetTracker) toCommit() (int64, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.next, t.next >= 0 && t.next > t.committed
}

// committedAt records a successful commit of offset.
func (t *offsetTracker) committedAt(offset int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if offset > t.committed {
		t.committed = offset
	}
}

// positions returns the watermark (-1 unknown), the committed offset (-1
// none) and how many read records are not settled yet.
func (t *offsetTracker) positions() (next, committed int64, inFlight int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.next, t.committed, len(t.pending) - t.head
}
