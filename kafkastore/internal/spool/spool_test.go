package spool

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"
)

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func mustOpen(t *testing.T, dir string, o Options) *Spool {
	t.Helper()
	s, err := Open(dir, o)
	if err != nil {
		t.Fatalf("Open(%s): %v", dir, err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// readAll reads until n records came back.
func readAll(t *testing.T, s *Spool, n int) []Record {
	t.Helper()
	var out []Record
	ctx := ctxT(t)
	for len(out) < n {
		recs, err := s.Read(ctx, 100, 1<<20)
		if err != nil {
			t.Fatalf("Read after %d of %d records: %v", len(out), n, err)
		}
		out = append(out, recs...)
	}
	return out
}

func TestAppendReadAckReopen(t *testing.T) {
	dir := t.TempDir()
	o := Options{MaxBytes: 1 << 20, SegmentBytes: 64 << 10, CursorInterval: time.Millisecond}
	s := mustOpen(t, dir, o)
	ctx := ctxT(t)
	const n = 500
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- s.Append(ctx, fmt.Appendf(nil, "record %04d %0400d", i, i))
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("Append: %v", err)
		}
	}
	recs := readAll(t, s, n)
	seen := map[string]bool{}
	for i, r := range recs {
		if i > 0 && r.Seq != recs[i-1].Seq+1 {
			t.Fatalf("seq %d follows %d", r.Seq, recs[i-1].Seq)
		}
		seen[string(r.Payload)] = true
	}
	if len(seen) != n {
		t.Fatalf("read %d distinct payloads, want %d", len(seen), n)
	}
	st := s.Stats()
	if st.Segments < 2 || st.Records != n || st.Appended != n {
		t.Fatalf("stats %+v: want several segments and %d records", st, n)
	}
	if st.Oldest.IsZero() || st.Oldest.After(time.Now()) || st.Bytes != int64(n)*(headerSize+412) {
		t.Fatalf("stats %+v: want the oldest record's time and %d frames of %d bytes", st, n, headerSize+412)
	}
	s.Ack(recs[199].Seq)
	if st := s.Stats(); st.Records != n-200 || st.Acked != 200 || !st.Oldest.Equal(recs[200].Appended) {
		t.Fatalf("stats after acknowledging 200: %+v, want %d records, oldest %v", st, n-200, recs[200].Appended)
	}
	s.flushCursor()
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := s.Append(ctx, []byte("x")); !errors.Is(err, ErrClosed) {
		t.Fatalf("Append after Close: %v, want ErrClosed", err)
	}

	s2 := mustOpen(t, dir, o)
	if st := s2.Stats(); st.Replayed != n-200 {
		t.Fatalf("replayed %d, want %d", st.Replayed, n-200)
	}
	again := readAll(t, s2, n-200)
	for i, r := range again {
		if string(r.Payload) != string(recs[200+i].Payload) || r.Seq != recs[200+i].Seq {
			t.Fatalf("record %d after reopen: seq %d %q, want seq %d", i, r.Seq, r.Payload[:11], recs[200+i].Seq)
		}
	}
	if err := s2.Append(ctx, []byte("after")); err != nil {
		t.Fatal(err)
	}
	r := readAll(t, s2, 1)
	if r[0].Seq != recs[n-1].Seq+1 || string(r[0].Payload) != "after" {
		t.Fatalf("next record: seq %d %q", r[0].Seq, r[0].Payload)
	}
	s2.Ack(r[0].Seq)
	s2.flushCursor()
	if st := s2.Stats(); st.Records != 0 || st.Segments != 1 || !st.Oldest.IsZero() {
		t.Fatalf("after acking everything: %+v, want no records and only the active segment", st)
	}
}

func TestReadLimitsAndWaits(t *testing.T) {
	s := mustOpen(t, t.TempDir(), Options{MaxBytes: 4 << 20, SegmentBytes: 64 << 10})
	ctx := ctxT(t)
	short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	if recs, err := s.Read(short, 10, 1000); !errors.Is(err, context.DeadlineExceeded) || len(recs) != 0 {
		t.Fatalf("Read of an empty spool: %d records, %v; want it to wait until ctx ends", len(recs), err)
	}
	for i := range 10 {
		if err := s.Append(ctx, make([]byte, 100*(i+1))); err != nil {
			t.Fatal(err)
		}
	}
	recs, err := s.Read(ctx, 3, 1<<20)
	if err != nil || len(recs) != 3 {
		t.Fatalf("Read of at most 3: %d, %v", len(recs), err)
	}
	recs, err = s.Read(ctx, 100, 900) // 400+500 bytes fit, 600 does not
	if err != nil || len(recs) != 2 || len(recs[0].Payload) != 400 {
		t.Fatalf("Read of at most 900 bytes: %d records, %v", len(recs), err)
	}
	recs, err = s.Read(ctx, 100, 1) // one record even if larger
	if err != nil || len(recs) != 1 || len(recs[0].Payload) != 600 {
		t.Fatalf("Read of at most 1 byte: %d records, %v; want the next one alone", len(recs), err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := s.Read(ctx, 100, 1<<20) // four left
		if err == nil {
			_, err = s.Read(ctx, 100, 1<<20) // nothing left: waits for Close
		}
		done <- err
	}()
	time.Sleep(20 * time.Millisecond)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; !errors.Is(err, ErrClosed) {
		t.Fatalf("a Read waiting at Close: %v, want ErrClosed", err)
	}
}

// TestCloseAnswersQueuedAppends closes while Appends are in flight: each
// either returned nil, and is found after reopening, or ErrClosed.
func TestCloseAnswersQueuedAppends(t *testing.T) {
	dir := t.TempDir()
	o := Options{MaxBytes: 16 << 20, SegmentBytes: 64 << 10}
	s, err := Open(dir, o)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	ok := map[string]bool{}
	var wg sync.WaitGroup
	for g := range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				p := fmt.Sprintf("g%02d-%05d", g, i)
				err := s.Append(context.Background(), []byte(p))
				if errors.Is(err, ErrClosed) {
					return
				}
				if err != nil {
					t.Errorf("Append: %v", err)
					return
				}
				mu.Lock()
				ok[p] = true
				mu.Unlock()
			}
		}()
	}
	time.Sleep(100 * time.Millisecond)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	s = mustOpen(t, dir, o)
	recs := readAvailable(s)
	got := map[string]bool{}
	for _, r := range recs {
		got[string(r.Payload)] = true
	}
	for p := range ok {
		if !got[p] {
			t.Fatalf("%s: its Append returned nil before Close, and it is gone after reopening", p)
		}
	}
	if len(ok) == 0 || len(got) != len(ok) {
		t.Fatalf("%d Appends returned nil, %d records found", len(ok), len(got))
	}
}
