package spool

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// snapshot copies the spool's files as a kill -9 leaves them: every write
// made so far (the page cache survives the process), the cursor as last
// written. It copies the segments first, so that a cursor copied later
// can only be newer.
func snapshot(t *testing.T, from, to string) {
	t.Helper()
	names, _ := filepath.Glob(filepath.Join(from, "*.seg"))
	names = append(names, filepath.Join(from, cursorFile))
	for _, name := range names {
		b, err := os.ReadFile(name)
		if os.IsNotExist(err) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(to, filepath.Base(name)), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// TestManySegmentsAcrossRestarts runs Open, concurrent Appends, Read, Ack
// and Close cycles with small segments; every other cycle ends like a kill
// -9 (its acknowledgements not yet durable). Order is kept, nothing is
// lost, and the only duplicates are the records acknowledged in a killed
// cycle.
func TestManySegmentsAcrossRestarts(t *testing.T) {
	o := Options{MaxBytes: 4 << 20, SegmentBytes: 4 << 10, CursorInterval: time.Hour}
	dir := t.TempDir()
	var appended []string
	delivered := map[string]int{}
	seqOf := map[string]uint64{}
	ackedDurably := map[string]bool{} // acknowledged, then a clean Close
	window := map[string]bool{}       // acknowledged, then killed
	dups, windowed := 0, 0
	for cycle := range 10 {
		s, err := Open(dir, o)
		if err != nil {
			t.Fatalf("cycle %d: Open: %v", cycle, err)
		}
		var mu sync.Mutex
		var wg sync.WaitGroup
		for g := range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for j := range 15 {
					p := fmt.Sprintf("c%02d g%d j%02d %0*d", cycle, g, j, 100+(g*131+j*57)%900, 0)
					if err := s.Append(context.Background(), []byte(p)); err != nil {
						t.Errorf("cycle %d: Append: %v", cycle, err)
						return
					}
					mu.Lock()
					appended = append(appended, p)
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		recs := readAvailable(s)
		for i, r := range recs {
			p := string(r.Payload)
			if i > 0 && r.Seq <= recs[i-1].Seq {
				t.Fatalf("cycle %d: seq %d after %d", cycle, r.Seq, recs[i-1].Seq)
			}
			if seq, ok := seqOf[p]; ok && seq != r.Seq {
				t.Fatalf("cycle %d: %q was seq %d, now %d", cycle, p, seq, r.Seq)
			}
			seqOf[p] = r.Seq
			delivered[p]++
			switch {
			case ackedDurably[p]:
				t.Fatalf("cycle %d: %.12q delivered again though its acknowledgement was durable", cycle, p)
			case window[p]:
				dups++
				delete(window, p)
			}
		}
		if len(recs) == 0 {
			t.Fatalf("cycle %d: nothing to read", cycle)
		}
		acked := recs[:len(recs)*3/4+1]
		s.Ack(acked[len(acked)-1].Seq)
		killed := cycle%2 == 1
		for _, r := range acked {
			if killed {
				if !window[string(r.Payload)] {
					window[string(r.Payload)] = true
					windowed++
				}
			} else {
				ackedDurably[string(r.Payload)] = true
			}
		}
		if killed {
			next := t.TempDir()
			snapshot(t, dir, next)
			dir = next
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		if st := s.Stats(); cycle > 2 && st.Segments < 3 {
			t.Fatalf("cycle %d: %d segments, want several", cycle, st.Segments)
		}
	}
	s := mustOpen(t, dir, o)
	for _, r := range readAvailable(s) {
		p := string(r.Payload)
		delivered[p]++
		if ackedDurably[p] {
			t.Fatalf("%.12q delivered again though its acknowledgement was durable", p)
		}
		if window[p] {
			dups++
		}
	}
	for _, p := range appended {
		if delivered[p] == 0 {
			t.Fatalf("lost %.12q", p)
		}
	}
	// Every record acknowledged in a killed cycle comes back once, and
	// nothing else comes back after its acknowledgement.
	if dups != windowed || dups == 0 {
		t.Fatalf("%d duplicates, want exactly the %d records acknowledged in killed cycles", dups, windowed)
	}
	t.Logf("%d records over 10 cycles, %d duplicates: the records acknowledged in the killed cycles", len(appended), dups)
}
