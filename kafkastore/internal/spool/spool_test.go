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
