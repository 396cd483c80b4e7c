package spool

import (
	"encoding/binary"
	"runtime"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-whisk/activationstore/internal/testvolume"
)

// TestReplayLargeBacklogBoundedHeap appends a backlog of 1 MiB records (1
// GiB at the default and full volumes), reopens the spool and reads and
// acknowledges all of it: recovery and reading come from the files, so
// the heap stays within a fixed bound however large the backlog.
func TestReplayLargeBacklogBoundedHeap(t *testing.T) {
	const recordBytes = 1 << 20
	const heapBound = 64 << 20
	total := testvolume.Pick[int64](128<<20, 1<<30, 1<<30)
	n := int(total / recordBytes)
	o := Options{MaxBytes: 2 << 30, CursorInterval: 50 * time.Millisecond}
	dir := t.TempDir()
	s, err := Open(dir, o)
	if err != nil {
		t.Fatal(err)
	}
	ctx := ctxT(t)
	start := time.Now()
	var next atomic.Int64
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p := make([]byte, recordBytes)
			for {
				i := next.Add(1) - 1
				if i >= int64(n) {
					return
				}
				binary.LittleEndian.PutUint64(p, uint64(i))
				if err := s.Append(ctx, p); err != nil {
					t.Errorf("Append %d: %v", i, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	t.Logf("appended %d MiB in %v", total>>20, time.Since(start).Round(time.Millisecond))
	if t.Failed() {
		return
	}

	// Tell the collector the bound, as GOMEMLIMIT would in production:
	// then the heap measures what the spool keeps, not how far garbage
	// (every Read allocates the payloads it returns) runs ahead of a
	// collector on a busy 2-CPU machine. A spool that kept the backlog in
	// memory would still blow through it.
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(heapBound * 3 / 4))
	runtime.GC()
	var peak atomic.Uint64
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		var ms runtime.MemStats
		for {
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse > peak.Load() {
				peak.Store(ms.HeapInuse)
			}
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
		}
	}()
	start = time.Now()
	s, err = Open(dir, o)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	opened := time.Since(start)
	if st := s.Stats(); st.Replayed != uint64(n) {
		t.Fatalf("replayed %d records, want %d", st.Replayed, n)
	}
	seen := make([]bool, n)
	for got := 0; got < n; {
		recs, err := s.Read(ctx, 4, 4<<20) // the heap holds what the caller asks for
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range recs {
			i := binary.LittleEndian.Uint64(r.Payload)
			if len(r.Payload) != recordBytes || i >= uint64(n) || seen[i] {
				t.Fatalf("record seq %d: %d bytes, index %d (of %d, seen before: %v)", r.Seq, len(r.Payload), i, n, i < uint64(n) && seen[i])
			}
			seen[i] = true
		}
		got += len(recs)
		s.Ack(recs[len(recs)-1].Seq)
	}
	replay := time.Since(start)
	close(stop)
	<-sampled
	s.flushCursor()
	st := s.Stats()
	t.Logf("replayed %d MiB in %v (Open %v), heap in use at most %d MiB; %d segments left",
		total>>20, replay.Round(time.Millisecond), opened.Round(time.Millisecond), peak.Load()>>20, st.Segments)
	if peak.Load() > heapBound {
		t.Fatalf("heap in use reached %d MiB while replaying, want at most %d MiB", peak.Load()>>20, heapBound>>20)
	}
	if st.Records != 0 || st.Segments != 1 {
		t.Fatalf("after acknowledging everything: %+v, want no records and only the active segment", st)
	}
}
