package persister

import (
	"context"
	"math/rand/v2"
	"testing"
	"time"
)

func TestOffsetTrackerCommitsContiguousPrefix(t *testing.T) {
	tr := newOffsetTracker(-1)
	if _, _, ok := tr.toCommit(); ok {
		t.Fatal("commit before any record")
	}
	for _, off := range []int64{10, 11, 13, 14, 20} { // gaps: compaction, markers
		tr.add(off)
	}
	step := func(settle int64, want int64, wantOK bool) {
		t.Helper()
		tr.settle(settle, endPersisted)
		got, _, ok := tr.toCommit()
		if got != want || ok != wantOK {
			t.Fatalf("after settling %d: toCommit = %d, %v; want %d, %v", settle, got, ok, want, wantOK)
		}
	}
	step(13, 10, true) // 10 not settled: only the position of the first record
	tr.committedAt(10, "")
	step(14, 10, false)
	step(10, 11, true)
	step(11, 15, true) // 11, 13, 14 settled: next to read is 15
	step(20, 21, true)
	tr.committedAt(21, "")
	if _, _, ok := tr.toCommit(); ok {
		t.Fatal("commit again without progress")
	}
	if tr.settle(20, endPersisted) || tr.settle(99, endPersisted) {
		t.Fatal("settling twice or settling an unknown offset moved the watermark")
	}
	next, committed, inFlight := tr.positions()
	if next != 21 || committed != 21 || inFlight != 0 {
		t.Fatalf("positions = %d, %d, %d", next, committed, inFlight)
	}
	tr.add(30) // after a gap with nothing pending
	if got, _, _ := tr.toCommit(); got != 30 {
		t.Fatalf("after a gap: %d, want 30", got)
	}
}

func TestOffsetTrackerRandomOrder(t *testing.T) {
	const n = 5000
	tr := newOffsetTracker(100)
	offs := make([]int64, n)
	for i := range offs {
		offs[i] = 100 + int64(i)*2
		tr.add(offs[i])
	}
	order := rand.Perm(n)
	settled := make([]bool, n)
	for _, i := range order {
		tr.settle(offs[i], endPersisted)
		settled[i] = true
		prefix := 0
		for prefix < n && settled[prefix] {
			prefix++
		}
		want := int64(100)
		if prefix > 0 {
			want = offs[prefix-1] + 1
		}
		if got, _, _ := tr.toCommit(); got != want {
			t.Fatalf("settled prefix %d: commit %d, want %d", prefix, got, want)
		}
	}
}

func TestByteBudget(t *testing.T) {
	b := newPersistBudget(100)
	got, err := b.acquire(context.Background(), 60)
	if err != nil || got != 60 {
		t.Fatal(got, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := b.acquire(ctx, 50); err == nil {
		t.Fatal("acquired above the limit")
	}
	done := make(chan int64)
	go func() {
		n, _ := b.acquire(context.Background(), 1000) // above the limit: takes all of it
		done <- n
	}()
	time.Sleep(10 * time.Millisecond)
	b.release(60)
	if n := <-done; n != 100 {
		t.Fatalf("oversize acquire took %d, want the whole limit", n)
	}
	if used, peak := b.usage(); used != 100 || peak != 100 {
		t.Fatalf("usage %d peak %d", used, peak)
	}
}
