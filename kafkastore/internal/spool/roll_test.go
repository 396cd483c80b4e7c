package spool

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"
)

// TestReaderWaitsForARolledSegmentsSync: the writer may start a new
// segment while the last groups of the one before still await their
// sync. A reader that moved on then would skip those records for good,
// and an Ack of a later record would pass them. With small segments and
// concurrent Appends, the reader acking as it goes gets every appended
// record, once, in order, and the spool ends empty.
func TestReaderWaitsForARolledSegmentsSync(t *testing.T) {
	s := mustOpen(t, t.TempDir(), Options{MaxBytes: 64 << 20, SegmentBytes: 64 << 10, CursorInterval: time.Millisecond})
	const callers, each = 32, 60
	payload := make([]byte, 15<<10) // four frames to a segment
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	var wg sync.WaitGroup
	for range callers {
		wg.Go(func() {
			for range each {
				if err := s.Append(ctx, payload); err != nil {
					t.Errorf("Append: %v", err)
					return
				}
			}
		})
	}
	var got []uint64
	readDone := make(chan error, 1)
	go func() {
		for len(got) < callers*each {
			recs, err := s.Read(ctx, 100, 1<<20)
			if err != nil {
				readDone <- fmt.Errorf("Read after %d of %d records: %w (stats %+v)", len(got), callers*each, err, s.Stats())
				return
			}
			for _, r := range recs {
				got = append(got, r.Seq)
			}
			s.Ack(recs[len(recs)-1].Seq)
		}
		readDone <- nil
	}()
	wg.Wait()
	if err := <-readDone; err != nil {
		t.Fatal(err)
	}
	for i := 1; i < len(got); i++ {
		if got[i] != got[i-1]+1 {
			t.Fatalf("record %d has seq %d after %d: records skipped or repeated", i, got[i], got[i-1])
		}
	}
	if st := s.Stats(); st.Records != 0 {
		t.Fatalf("%d records left unread: %+v", st.Records, st)
	}
}
