package hardeningtest

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"os"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/go-whisk/activationstore/internal/couchtest"
	"github.com/go-whisk/activationstore/internal/kafkatest"
	"github.com/go-whisk/activationstore/internal/logtest"
)

// TestMain stops the shared test servers (CouchDB, and Apache Kafka under
// KAFKATEST=apache) with the test binary.
func TestMain(m *testing.M) {
	code := m.Run()
	kafkatest.Stop()
	couchtest.Stop()
	os.Exit(code)
}

func ctxFor(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// debugLogger logs everything, as JSON, into buf.
func debugLogger(buf *logtest.Buffer) *slog.Logger {
	return slog.New(slog.NewJSONHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// closedPort returns "127.0.0.1:port" where nothing listens.
func closedPort(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	return addr
}

// leakCheck snapshots the goroutines running now; its verify method fails
// the test if others are still running after a settle time, and returns
// the goroutine counts before and after for the summary.
type leakCheck struct {
	ignore goleak.Option
	before int
}

func startLeakCheck() *leakCheck {
	return &leakCheck{ignore: goleak.IgnoreCurrent(), before: runtime.NumGoroutine()}
}

func (l *leakCheck) verify(t testing.TB, what string) (before, after int) {
	t.Helper()
	// Let goroutines that are on their way out finish: up to 2 s.
	deadline := time.Now().Add(2 * time.Second)
	for runtime.NumGoroutine() > l.before && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if err := goleak.Find(l.ignore); err != nil {
		t.Errorf("%s: goroutines leaked: %v", what, err)
	}
	return l.before, runtime.NumGoroutine()
}

// countingTransport counts the requests that reach the network.
type countingTransport struct {
	n    atomic.Int64
	next http.RoundTripper
}

func (c *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	c.n.Add(1)
	return c.next.RoundTrip(r)
}

func newCountingClient() (*http.Client, *countingTransport, func()) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	ct := &countingTransport{next: tr}
	return &http.Client{Transport: ct}, ct, tr.CloseIdleConnections
}
