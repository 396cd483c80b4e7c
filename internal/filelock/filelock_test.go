//go:build unix

package filelock

import (
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"
)

func TestLockExcludesAndReleases(t *testing.T) {
	path := filepath.Join(t.TempDir(), "setup.lock")
	unlock, err := Lock(path)
	if err != nil {
		t.Fatalf("Lock: %v", err)
	}
	var second atomic.Bool
	done := make(chan struct{})
	go func() {
		defer close(done)
		u, err := Lock(path) // another descriptor: flock excludes it
		if err != nil {
			t.Errorf("second Lock: %v", err)
			return
		}
		second.Store(true)
		u()
	}()
	time.Sleep(100 * time.Millisecond)
	if second.Load() {
		t.Fatal("a second Lock succeeded while the first was held")
	}
	unlock()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the second Lock did not get the lock after the first was released")
	}
	if !second.Load() {
		t.Fatal("the second Lock never held the lock")
	}
}
