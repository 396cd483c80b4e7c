package losstest

import (
	"os"
	"testing"
	"time"

	"github.com/go-whisk/activationstore/internal/couchtest"
	"github.com/go-whisk/activationstore/internal/kafkatest"
	"github.com/go-whisk/activationstore/internal/searchtest"
)

// TestMain stops the shared test servers (CouchDB, and Apache Kafka under
// KAFKATEST=apache) with the test binary. Started with brokerChildEnv set,
// the binary is a broker process instead (see startBrokerProcess).
func TestMain(m *testing.M) {
	if os.Getenv(brokerChildEnv) != "" {
		os.Exit(runBrokerChild())
	}
	code := m.Run()
	kafkatest.Stop()
	couchtest.Stop()
	searchtest.Stop()
	os.Exit(code)
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
