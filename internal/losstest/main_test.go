package losstest

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/go-whisk/activationstore/internal/couchtest"
	"github.com/go-whisk/activationstore/internal/kafkatest"
	"github.com/go-whisk/activationstore/internal/searchtest"
	"github.com/go-whisk/activationstore/primary/couchdb"
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

// couchPrimary opens a fresh database of the shared CouchDB server for
// the test, closed at its end, and returns its URL and name too.
func couchPrimary(ctx context.Context, t *testing.T) (primary *couchdb.Store, couchURL, db string) {
	t.Helper()
	couchURL, db = couchtest.URL(t), couchtest.DBName(t)
	primary, err := couchdb.New(ctx, couchURL, db)
	if err != nil {
		t.Fatalf("couchdb.New: %v", err)
	}
	t.Cleanup(func() { _ = primary.Close() })
	return primary, couchURL, db
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
