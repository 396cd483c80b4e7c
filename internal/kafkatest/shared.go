package kafkatest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/go-whisk/activationstore/internal/childproc"
)

// shared is the test binary's Apache Kafka broker under KAFKATEST=apache:
// a JVM starts in seconds, not milliseconds, so every Start shares one.
var shared struct {
	once    sync.Once
	cluster *apacheCluster
	err     error

	mu     sync.Mutex
	failed childproc.FailedTests // keep its logs when one failed
}

var errStopped = errors.New("kafkatest: the shared broker was stopped (Stop or Main ran)")

func sharedApache() (*apacheCluster, error) {
	shared.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		shared.cluster, shared.err = startApache(ctx, apacheSpec{version: Version(), nodes: 1})
		if shared.err == nil {
			fmt.Fprintf(os.Stderr, "kafkatest: shared Apache Kafka %s (%s) ready in %v at %s (logs: %s)\n",
				shared.cluster.spec.version, shared.cluster.spec.mode(), shared.cluster.startup.Round(time.Millisecond),
				shared.cluster.nodes[0].addr(secPlain), shared.cluster.logs())
		}
	})
	shared.mu.Lock()
	defer shared.mu.Unlock()
	return shared.cluster, shared.err
}

// watchShared remembers t if it fails, so that Stop keeps the broker's
// logs.
func watchShared(t testing.TB) { shared.failed.Watch(t) }

// Main runs the tests and stops the shared Apache Kafka broker, if one was
// started, before the test binary exits. Call it from TestMain:
//
//	func TestMain(m *testing.M) { kafkatest.Main(m) }
//
// A package that also uses couchtest calls m.Run, then Stop, itself.
func Main(m *testing.M) { childproc.RunThenStop(m, Stop) }

// Stop stops the shared Apache Kafka broker, if one was started, and
// removes its files, unless a test using it failed: then its logs stay and
// their path is printed. Later Starts in the same binary fail.
func Stop() {
	shared.once.Do(func() {}) // no start after this
	shared.mu.Lock()
	c, failed := shared.cluster, shared.failed.Names()
	shared.cluster, shared.err = nil, errStopped
	shared.mu.Unlock()
	if c == nil {
		return
	}
	c.close(len(failed) > 0)
	if len(failed) > 0 {
		fmt.Fprintf(os.Stderr, "kafkatest: tests %v failed; the shared Apache Kafka broker's logs are kept: %s\n", failed, c.logs())
	}
}
