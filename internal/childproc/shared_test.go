package childproc

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"
)

func TestFailedTestsRecordsOnlyFailures(t *testing.T) {
	var f FailedTests
	t.Run("passes", func(t *testing.T) { f.Watch(t) })
	// A failing subtest would fail this test too: record through a
	// testing.TB that reports itself failed instead.
	ft := &failedTB{TB: t}
	f.Watch(ft)
	ft.runCleanups()
	if got, want := f.Names(), []string{t.Name()}; !slices.Equal(got, want) {
		t.Errorf("Names() = %v, want %v", got, want)
	}
}

// failedTB is a testing.TB that has failed and runs its cleanups when told.
type failedTB struct {
	testing.TB
	cleanups []func()
}

func (f *failedTB) Failed() bool      { return true }
func (f *failedTB) Cleanup(fn func()) { f.cleanups = append(f.cleanups, fn) }
func (f *failedTB) runCleanups() {
	for _, fn := range f.cleanups {
		fn()
	}
}

func TestWaitAllSharesOneDeadline(t *testing.T) {
	var waited []int
	err := WaitAll(context.Background(), time.Second, 3, func(ctx context.Context, i int) error {
		waited = append(waited, i)
		if _, ok := ctx.Deadline(); !ok {
			t.Errorf("node %d waited without a deadline", i)
		}
		return nil
	})
	if err != nil || !slices.Equal(waited, []int{0, 1, 2}) {
		t.Fatalf("WaitAll = %v after waiting for %v, want nil after 0, 1, 2", err, waited)
	}
	stop := errors.New("node 1 exited")
	waited = nil
	err = WaitAll(context.Background(), time.Second, 3, func(ctx context.Context, i int) error {
		waited = append(waited, i)
		if i == 1 {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) || !slices.Equal(waited, []int{0, 1}) {
		t.Errorf("WaitAll = %v after %v, want node 1's error after 0, 1", err, waited)
	}
	start := time.Now()
	err = WaitAll(context.Background(), 50*time.Millisecond, 2, func(ctx context.Context, i int) error {
		<-ctx.Done()
		return ctx.Err()
	})
	if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > 5*time.Second {
		t.Errorf("WaitAll past its deadline = %v after %v, want DeadlineExceeded after 50 ms", err, time.Since(start))
	}
}
