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
// the binary is a broker process instead (see startBrokerProcess); with
// spoolChildEnv, a Store process (see TestSpoolSurvivesKillNine).
func TestMain(m *testing.M) {
	if os.Getenv(brokerChildEnv) != "" {
		os.Exit(runBrokerChild())
	}
	if cfg := os.Getenv(spoolChildEnv); cfg != "" {
		os.Exit(runSpoolChild(cfg))
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

// listDocIDs lists the ids of db's documents within the given time,
// failing the test when it cannot.
func listDocIDs(ctx context.Context, t *testing.T, couchURL, db string, within time.Duration) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, within)
	defer cancel()
	ids, err := DocIDs(ctx, couchURL, db)
	if err != nil {
		t.Fatalf("list the database: %v", err)
	}
	return ids
}

// checkDatabase checks that db holds each of run's activations [0, n)
// exactly once, and nothing else of the run.
func checkDatabase(ctx context.Context, t *testing.T, couchURL, db string, run uint32, n int, within time.Duration) Tally {
	t.Helper()
	tally := CheckDocIDs(listDocIDs(ctx, t, couchURL, db, within), run, n)
	if !tally.OK() || tally.Present != n {
		t.Errorf("database %s: %v; want all %d present once", db, tally, n)
	}
	return tally
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
