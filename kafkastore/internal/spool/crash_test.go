package spool

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"
)

// crashRun is what a workload saw: the payloads whose Append returned
// nil, in order, those whose Append failed, and the seq of every
// acknowledged payload.
type crashRun struct {
	ok, failed []string
	acked      map[string]uint64
}

func crashPayload(i int) []byte {
	return fmt.Appendf(nil, "rec-%04d-%s", i, strings.Repeat("x", 150+(i*397)%1400))
}

// readAvailable reads every record that is readable now without waiting.
func readAvailable(s *Spool) []Record {
	var out []Record
	for {
		s.mu.Lock()
		_, _, _, ok := s.readableLocked()
		s.mu.Unlock()
		if !ok {
			return out
		}
		recs, err := s.Read(context.Background(), 1000, 1<<20)
		if err != nil {
			return out
		}
		out = append(out, recs...)
	}
}

// crashWorkload appends, reads and acknowledges sequentially, so that the
// same operations happen in the same order on every run: several
// segments, rolls, cursor updates and segment deletions.
func crashWorkload(s *Spool) *crashRun {
	ctx := context.Background()
	run := &crashRun{acked: map[string]uint64{}}
	idx := 0
	var read []Record
	for round := range 6 {
		for range 5 {
			p := crashPayload(idx)
			idx++
			if err := s.Append(ctx, p); err != nil {
				run.failed = append(run.failed, string(p))
			} else {
				run.ok = append(run.ok, string(p))
			}
		}
		read = append(read, readAvailable(s)...)
		// Ack is cumulative: acknowledge two thirds of what was read.
		if n := len(read) * 2 / 3; n > 0 {
			s.Ack(read[n-1].Seq)
			for _, r := range read[:n] {
				run.acked[string(r.Payload)] = r.Seq
			}
			read = read[n:]
		}
		if round%2 == 1 {
			s.flushCursor()
		}
	}
	return run
}

var crashOptions = Options{MaxBytes: 1 << 20, SegmentBytes: 4 << 10, CursorInterval: time.Hour}

// TestCrashPoints crashes the machine after every mutating file operation
// of a run (create, write, sync, truncate, preallocate, rename, remove,
// directory sync), keeps only what was synced, and reopens: every record
// whose Append returned nil and which was not acknowledged is there, in
// order; the only extra records are acknowledged ones past the durable
// cursor.
func TestCrashPoints(t *testing.T) {
	dry := newCrashFS()
	o := crashOptions
	o.fs = dry
	s, err := Open(t.TempDir(), o)
	if err != nil {
		t.Fatal(err)
	}
	full := crashWorkload(s)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	ops := dry.ops
	kinds := map[string]int{}
	for _, op := range dry.trace {
		kinds[strings.Fields(op)[0]]++
	}
	if len(full.failed) > 0 || kinds["remove"] == 0 || kinds["rename"] < 3 || kinds["create"] < 5 {
		t.Fatalf("the workload without a crash: %d failed Appends, operations %v: want none failed, several segments, cursor updates and deletions", len(full.failed), kinds)
	}
	t.Logf("%d operations per run: %v", ops, kinds)

	maxDups := 0
	for k := 1; k <= ops; k++ {
		cfs := newCrashFS()
		cfs.crashAt = k
		o := crashOptions
		o.fs = cfs
		dir := t.TempDir()
		s, err := Open(dir, o)
		if err != nil {
			t.Fatal(err)
		}
		run := crashWorkload(s)
		_ = s.Close()
		after := t.TempDir()
		if err := cfs.materialize(dir, after); err != nil {
			t.Fatal(err)
		}
		dups := checkRecovered(t, fmt.Sprintf("crash after operation %d (%s)", k, cfs.trace[k-1]), after, run)
		maxDups = max(maxDups, dups)
	}
	t.Logf("%d crash points; at most %d duplicates (acknowledged, cursor not yet durable)", ops, maxDups)
}

// checkRecovered opens dir and checks it holds what run requires; it
// returns the number of acknowledged records found again.
func checkRecovered(t *testing.T, what, dir string, run *crashRun) (dups int) {
	t.Helper()
	s, err := Open(dir, crashOptions)
	if err != nil {
		t.Fatalf("%s: Open: %v", what, err)
	}
	defer s.Close()
	st := s.Stats()
	if st.TornTails+st.CorruptFrames+st.Quarantined != 0 {
		t.Errorf("%s: damage counted where only synced data survived: %+v", what, st)
	}
	recs := readAvailable(s)
	if uint64(len(recs)) != st.Replayed {
		t.Errorf("%s: read %d records, Stats.Replayed %d", what, len(recs), st.Replayed)
	}
	cursor := s.durable
	order := map[string]int{}
	for i, p := range run.ok {
		order[p] = i
	}
	failed := map[string]bool{}
	for _, p := range run.failed {
		failed[p] = true
	}
	got := map[string]bool{}
	last := -1
	for i, r := range recs {
		p := string(r.Payload)
		if i > 0 && r.Seq <= recs[i-1].Seq {
			t.Errorf("%s: seq %d after %d", what, r.Seq, recs[i-1].Seq)
		}
		if got[p] {
			t.Errorf("%s: %.8s read twice", what, p)
		}
		got[p] = true
		o, ok := order[p]
		switch {
		case ok && o < last:
			t.Errorf("%s: %.8s out of order", what, p)
		case ok:
			last = o
		case !failed[p]:
			t.Errorf("%s: a record never appended: %.20q", what, p)
		}
		if seq, acked := run.acked[p]; acked {
			dups++
			if seq != r.Seq {
				t.Errorf("%s: %.8s was seq %d, now %d", what, p, seq, r.Seq)
			}
		}
	}
	for _, p := range run.ok {
		seq, acked := run.acked[p]
		switch {
		case !acked && !got[p]:
			t.Errorf("%s: lost %.8s: its Append returned nil and it was never acknowledged", what, p)
		case acked && seq >= cursor && !got[p]:
			t.Errorf("%s: lost %.8s (seq %d): acknowledged but past the durable cursor %d", what, p, seq, cursor)
		case acked && seq < cursor && got[p]:
			t.Errorf("%s: %.8s (seq %d) came back behind the durable cursor %d", what, p, seq, cursor)
		}
	}
	var highest uint64
	for _, seq := range run.acked {
		highest = max(highest, seq)
	}
	if cursor > highest+1 && highest > 0 {
		t.Errorf("%s: the durable cursor %d is past the highest acknowledged seq %d", what, cursor, highest)
	}
	return dups
}

// TestFailedSyncRetiresTheSegment fails one group's fdatasync: exactly
// that group's Appends get a *WriteError, its segment is never written or
// synced again, later Appends go to a new segment, and a restart finds
// every record whose Append returned nil.
func TestFailedSyncRetiresTheSegment(t *testing.T) {
	cfs := newCrashFS()
	var (
		syncs    int
		failedOn *inode
	)
	eio := errors.New("injected")
	o := crashOptions
	o.SegmentBytes = 64 << 10
	o.fs = cfs
	dir := t.TempDir()
	s := mustOpen(t, dir, o)
	ctx := ctxT(t)
	run := &crashRun{acked: map[string]uint64{}}
	for i := range 10 {
		p := crashPayload(i)
		if err := s.Append(ctx, p); err != nil {
			t.Fatal(err)
		}
		run.ok = append(run.ok, string(p))
	}
	// Hold the syncer in its next sync so that five Appends are written
	// behind it, then fail the sync that covers them.
	release := make(chan struct{})
	held := make(chan struct{})
	cfs.mu.Lock()
	cfs.fault = func(op string, ino *inode) error {
		if op != "sync" || !strings.HasSuffix(ino.path, ".seg") {
			return nil
		}
		syncs++
		switch syncs {
		case 1:
			close(held)
			cfs.mu.Unlock()
			<-release
			cfs.mu.Lock()
		case 2:
			failedOn = ino
			return syscall_EIO(eio)
		}
		return nil
	}
	cfs.mu.Unlock()
	first := make(chan error, 1)
	go func() { first <- s.Append(ctx, crashPayload(10)) }()
	<-held
	group := make(chan error, 5)
	for i := 11; i < 16; i++ {
		go func() { group <- s.Append(ctx, crashPayload(i)) }()
	}
	for { // written behind the held sync, waiting for the next one
		s.mu.Lock()
		n := 0
		for _, f := range s.flights {
			n += len(f.batch)
		}
		queued := len(s.queue)
		s.mu.Unlock()
		if n == 5 && queued == 0 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	close(release)
	if err := <-first; err != nil {
		t.Fatalf("the Append whose sync succeeded: %v", err)
	}
	run.ok = append(run.ok, string(crashPayload(10)))
	for range 5 {
		err := <-group
		var we *WriteError
		if !errors.As(err, &we) || we.Op != "fdatasync" || !errors.Is(err, eio) {
			t.Fatalf("an Append of the failed group: %v, want a *WriteError of fdatasync wrapping the injected error", err)
		}
	}
	for i := 11; i < 16; i++ {
		run.failed = append(run.failed, string(crashPayload(i)))
	}
	cfs.mu.Lock()
	syncsBefore, writesBefore := failedOn.syncs, failedOn.writes
	cfs.mu.Unlock()
	for i := 16; i < 40; i++ {
		p := crashPayload(i)
		if err := s.Append(ctx, p); err != nil {
			t.Fatalf("Append after the failed group: %v", err)
		}
		run.ok = append(run.ok, string(p))
	}
	st := s.Stats()
	if st.WriteErrors != 1 || st.DiskError != nil || st.Segments < 2 {
		t.Fatalf("stats %+v: want one write error, no DiskError after later successes, a new segment", st)
	}
	cfs.mu.Lock()
	if failedOn.syncs != syncsBefore || failedOn.writes != writesBefore {
		t.Fatalf("the retired segment was written %d or synced %d more times", failedOn.writes-writesBefore, failedOn.syncs-syncsBefore)
	}
	cfs.mu.Unlock()
	recs := readAvailable(s)
	if len(recs) != len(run.ok) {
		t.Fatalf("read %d records, want the %d whose Append returned nil", len(recs), len(run.ok))
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	after := t.TempDir()
	if err := cfs.materialize(dir, after); err != nil {
		t.Fatal(err)
	}
	checkRecovered(t, "after the failed sync", after, run)
}

func syscall_EIO(wrapped error) error { return errors.Join(wrapped, os.ErrInvalid) }
