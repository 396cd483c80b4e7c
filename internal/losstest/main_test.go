package losstest

import (
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/go-whisk/activationstore/internal/couchtest"
	"github.com/go-whisk/activationstore/internal/kafkatest"
)

// TestMain stops the CouchDB test server with the test binary.
func TestMain(m *testing.M) { couchtest.Main(m) }

// startBroker starts the in-process broker, allowing the short group
// session timeouts these tests use so that restarts rejoin quickly.
func startBroker(t testing.TB) *kafkatest.Broker {
	t.Helper()
	return kafkatest.Start(t, kfake.GroupMinSessionTimeout(100*time.Millisecond))
}

// waitFor polls cond every 50 ms until it holds, failing the test after
// timeout.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
