package spool

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func segmentFilesSize(t *testing.T, dir string) int64 {
	t.Helper()
	names, _ := filepath.Glob(filepath.Join(dir, "*.seg"))
	var n int64
	for _, name := range names {
		fi, err := os.Stat(name)
		if err != nil {
			t.Fatal(err)
		}
		n += fi.Size()
	}
	return n
}

// TestFullWaitsThenErrFull fills a small spool with nobody acknowledging:
// Append waits and then fails with ErrFull, the disk stays within MaxBytes
// and one segment, and once records are acknowledged and the cursor
// written, room comes back and a waiting Append goes through.
func TestFullWaitsThenErrFull(t *testing.T) {
	o := Options{MaxBytes: 64 << 10, SegmentBytes: 16 << 10, CursorInterval: 10 * time.Millisecond}
	dir := t.TempDir()
	s := mustOpen(t, dir, o)
	payload := []byte(strings.Repeat("p", 1000))
	appended := 0
	var full error
	for appended < 1000 {
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		full = s.Append(ctx, payload)
		cancel()
		if full != nil {
			break
		}
		appended++
	}
	if !errors.Is(full, ErrFull) || !errors.Is(full, context.DeadlineExceeded) {
		t.Fatalf("Append into a full spool: %v, want ErrFull and the context's error", full)
	}
	st := s.Stats()
	t.Logf("full after %d records: %v; %+v", appended, full, st)
	if st.FullWaits != 1 || st.FullRejections != 1 || st.Records != int64(appended) {
		t.Fatalf("stats %+v: want one wait, one rejection, %d records", st, appended)
	}
	if appended < 40 {
		t.Fatalf("only %d records of %d bytes fit in MaxBytes %d", appended, len(payload), o.MaxBytes)
	}
	if disk := segmentFilesSize(t, dir); disk > o.MaxBytes+o.SegmentBytes || st.DiskBytes != disk {
		t.Fatalf("segment files take %d bytes (Stats.DiskBytes %d), want at most MaxBytes+SegmentBytes = %d", disk, st.DiskBytes, o.MaxBytes+o.SegmentBytes)
	}

	waiting := make(chan error, 1)
	go func() { waiting <- s.Append(ctxT(t), payload) }()
	for s.Stats().FullWaits < 2 {
		time.Sleep(time.Millisecond)
	}
	select {
	case err := <-waiting:
		t.Fatalf("an Append went through a full spool: %v", err)
	case <-time.After(50 * time.Millisecond):
	}
	recs := readAll(t, s, appended)
	s.Ack(recs[len(recs)-1].Seq)
	select {
	case err := <-waiting:
		if err != nil {
			t.Fatalf("the waiting Append once room came back: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the waiting Append still waits 10s after every record was acknowledged")
	}
	for range appended / 2 {
		if err := s.Append(ctxT(t), payload); err != nil {
			t.Fatalf("Append after room came back: %v", err)
		}
	}
	if disk := segmentFilesSize(t, dir); disk > o.MaxBytes+o.SegmentBytes {
		t.Fatalf("segment files take %d bytes, want at most %d", disk, o.MaxBytes+o.SegmentBytes)
	}
}

func TestBadOptionsAndTooLarge(t *testing.T) {
	for _, o := range []Options{
		{MaxBytes: 1 << 20, SegmentBytes: 1 << 20},
		{MaxBytes: 1 << 20, SegmentBytes: 100},
		{MaxBytes: -1},
	} {
		if _, err := Open(t.TempDir(), o); err == nil {
			t.Fatalf("Open with %+v succeeded", o)
		} else {
			t.Logf("%+v: %v", o, err)
		}
	}
	s := mustOpen(t, t.TempDir(), Options{MaxBytes: 1 << 20})
	err := s.Append(ctxT(t), make([]byte, 1<<19))
	if !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), "524288") {
		t.Fatalf("Append of half of MaxBytes: %v, want ErrTooLarge saying the limit", err)
	}
	// A payload larger than a segment gets a segment of its own.
	big := make([]byte, 300<<10)
	big[0] = 'b'
	if err := s.Append(ctxT(t), big); err != nil {
		t.Fatal(err)
	}
	if err := s.Append(ctxT(t), []byte("small")); err != nil {
		t.Fatal(err)
	}
	recs := readAll(t, s, 2)
	if len(recs[0].Payload) != len(big) || recs[0].Payload[0] != 'b' || string(recs[1].Payload) != "small" {
		t.Fatalf("read %d bytes and %q", len(recs[0].Payload), recs[1].Payload)
	}
}
