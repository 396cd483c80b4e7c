package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/go-whisk/activationstore/internal/kafkatest"
)

// TestMain stops the shared Apache Kafka broker (KAFKATEST=apache) with the
// test binary.
func TestMain(m *testing.M) { kafkatest.Main(m) }

// TestQuickstartTwiceOnOneCluster runs the quickstart twice against the
// same brokers, as a user trying it on a real cluster would: each run
// must verify its own activations, whatever earlier runs left on the
// topics.
func TestQuickstartTwiceOnOneCluster(t *testing.T) {
	b := kafkatest.Start(t)
	n := "3000"
	if testing.Short() {
		n = "500"
	}
	for i := 1; i <= 2; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		var out, errs bytes.Buffer
		err := run(ctx, []string{"-n", n, "-workers", "16", "-brokers", strings.Join(b.Addrs(), ",")}, &out, &errs)
		cancel()
		if err != nil {
			t.Fatalf("run %d against %s: %v\nstdout:\n%s\nstderr:\n%s", i, b, err, out.String(), errs.String())
		}
		if !strings.Contains(out.String(), "verified        all "+n) {
			t.Fatalf("run %d: no verification line in:\n%s", i, out.String())
		}
		t.Logf("run %d:\n%s", i, out.String())
	}
}
