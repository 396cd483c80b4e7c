package childproc

import (
	"context"
	"os"
	"sync"
	"testing"
	"time"
)

// FailedTests records which tests failed while they used a server the
// whole test binary shares, so that the harness keeps that server's logs
// when it stops it. The zero value is ready to use.
type FailedTests struct {
	mu    sync.Mutex
	names []string
}

// Watch records t's name when t has failed by the end of its cleanup.
func (f *FailedTests) Watch(t testing.TB) {
	t.Cleanup(func() {
		if t.Failed() {
			f.mu.Lock()
			f.names = append(f.names, t.Name())
			f.mu.Unlock()
		}
	})
}

// Names returns the failed tests recorded so far.
func (f *FailedTests) Names() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.names...)
}

// RunThenStop runs the tests, stops the servers the binary shares and
// exits with the tests' code: a harness's Main, for TestMain.
func RunThenStop(m *testing.M, stop func()) {
	code := m.Run()
	stop()
	os.Exit(code)
}

// WaitAll calls wait for each of n nodes in turn, all within one deadline:
// a cluster is ready once its last node is.
func WaitAll(ctx context.Context, within time.Duration, n int, wait func(ctx context.Context, i int) error) error {
	ctx, cancel := context.WithTimeout(ctx, within)
	defer cancel()
	for i := range n {
		if err := wait(ctx, i); err != nil {
			return err
		}
	}
	return nil
}
