package persister

import (
	"slices"
	"sort"
	"strconv"
	"strings"
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
	// doubt holds, sorted, the offsets of records abandoned after a write
	// that may have landed; committedMeta is the metadata committed last.
	doubt         []int64
	committedMeta string
	// settled below next, not yet committed: counted once committed.
	uncommitted []trackedOffset
}

type trackedOffset struct {
	offset  int64
	settled bool
	ending  ending
}

// ending is how a settled record ended. Endings are counted in the
// persister's stats only once committed: a record settled above the
// partition's last commit is read again by the next owner, and ends there.
type ending uint8

const (
	endPersisted   ending = iota
	endRedelivered        // persisted: found stored after an abandoned write
	endConflict
	endSkipped
	endStoreSkipped
	endDeadLettered
	numEndings
)

// endings counts records by ending.
type endings [numEndings]int64

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
func (t *offsetTracker) settle(offset int64, e ending) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	live := t.pending[t.head:]
	i := sort.Search(len(live), func(i int) bool { return live[i].offset >= offset })
	if i == len(live) || live[i].offset != offset || live[i].settled {
		return false // not ours (an abandoned generation's record) or settled twice
	}
	live[i].settled, live[i].ending = true, e
	if i != 0 {
		return false
	}
	for t.head < len(t.pending) && t.pending[t.head].settled {
		t.next = t.pending[t.head].offset + 1
		t.uncommitted = append(t.uncommitted, t.pending[t.head])
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

// abandonInDoubt remembers that the record at offset, left unsettled for
// the partition's next owner, may be in the primary already: the next
// owner, finding it there, counts it as persisted rather than as a
// conflict. The commit's metadata carries it over.
func (t *offsetTracker) abandonInDoubt(offset int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if i, found := slices.BinarySearch(t.doubt, offset); !found {
		t.doubt = slices.Insert(t.doubt, i, offset)
	}
}

// toCommit returns the offset to commit with its metadata (the offsets in
// doubt above it), and true when either changed since the last commit.
func (t *offsetTracker) toCommit() (int64, string, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.next < 0 {
		return t.next, "", false
	}
	i, _ := slices.BinarySearch(t.doubt, t.next)
	meta := formatInDoubt(t.doubt[i:])
	return t.next, meta, t.next > t.committed || (t.next == t.committed && meta != t.committedMeta)
}

// committedAt records a successful commit of offset with metadata, and
// returns the endings of the records it committed.
func (t *offsetTracker) committedAt(offset int64, meta string) (done endings) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if offset >= t.committed {
		t.committed, t.committedMeta = offset, meta
	}
	n := 0
	for _, r := range t.uncommitted {
		if r.offset >= offset {
			break
		}
		done[r.ending]++
		n++
	}
	t.uncommitted = t.uncommitted[n:]
	if len(t.uncommitted) == 0 {
		t.uncommitted = nil
	}
	return done
}

// closing prepares the generation's last commit: the records persisted
// above the watermark (past a record still unsettled) are read again by
// the next owner, who will find them stored; they join the offsets in
// doubt, so that it counts them as persisted rather than as conflicts.
func (t *offsetTracker) closing() {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, r := range t.pending[t.head:] {
		if r.settled && (r.ending == endPersisted || r.ending == endRedelivered) {
			if i, found := slices.BinarySearch(t.doubt, r.offset); !found {
				t.doubt = slices.Insert(t.doubt, i, r.offset)
			}
		}
	}
}

// leftOver returns how many settled records were not committed when the
// generation ended: the next owner reads them again.
func (t *offsetTracker) leftOver() int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := int64(len(t.uncommitted))
	for _, r := range t.pending[t.head:] {
		if r.settled {
			n++
		}
	}
	t.uncommitted = nil
	return n
}

// inDoubtPrefix starts the metadata of a commit that names offsets in
// doubt: "activationstore/in-doubt:" then ranges "a-b" or "a", comma-separated.
const inDoubtPrefix = "activationstore/in-doubt:"

// inDoubtMaxMeta keeps the metadata below the brokers' default
// offset.metadata.max.bytes (4096); offsets beyond it are dropped (they
// will be counted as conflicts if found persisted).
const inDoubtMaxMeta = 3800

// formatInDoubt encodes sorted offsets as commit metadata.
func formatInDoubt(offsets []int64) string {
	if len(offsets) == 0 {
		return ""
	}
	var b strings.Builder
	b.WriteString(inDoubtPrefix)
	for i := 0; i < len(offsets); {
		j := i
		for j+1 < len(offsets) && offsets[j+1] == offsets[j]+1 {
			j++
		}
		r := strconv.FormatInt(offsets[i], 10)
		if j > i {
			r += "-" + strconv.FormatInt(offsets[j], 10)
		}
		if b.Len()+len(r)+1 > inDoubtMaxMeta {
			break
		}
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(r)
		i = j + 1
	}
	return b.String()
}

// parseInDoubt decodes commit metadata into sorted offsets at or above
// from; anything else (another client's metadata) gives none.
func parseInDoubt(meta string, from int64) []int64 {
	rest, ok := strings.CutPrefix(meta, inDoubtPrefix)
	if !ok {
		return nil
	}
	var out []int64
	for r := range strings.SplitSeq(rest, ",") {
		lo, hi, isRange := strings.Cut(r, "-")
		a, err := strconv.ParseInt(lo, 10, 64)
		if err != nil {
			return nil
		}
		b := a
		if isRange {
			if b, err = strconv.ParseInt(hi, 10, 64); err != nil || b < a || b-a > 1<<20 {
				return nil
			}
		}
		for o := max(a, from); o <= b; o++ {
			out = append(out, o)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// positions returns the watermark (-1 unknown), the committed offset (-1
// none) and how many read records are not settled yet.
func (t *offsetTracker) positions() (next, committed int64, inFlight int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.next, t.committed, len(t.pending) - t.head
}
