package main

import (
	"bytes"
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/go-whisk/activationstore/internal/kafkatest"
	"github.com/go-whisk/activationstore/internal/searchtest"
)

// TestMain stops the shared Apache Kafka broker (KAFKATEST=apache) and the
// shared Elasticsearch/OpenSearch server with the test binary.
func TestMain(m *testing.M) {
	code := m.Run()
	kafkatest.Stop()
	searchtest.Stop()
	os.Exit(code)
}

// TestQuickstartElasticsearch runs the quickstart with the embedded broker
// and an Elasticsearch/OpenSearch primary.
func TestQuickstartElasticsearch(t *testing.T) {
	srv := searchtest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var out, errs bytes.Buffer
	err := run(ctx, []string{"-n", "500", "-workers", "8", "-elasticsearch", srv.URL(), "-index-pattern", srv.IndexPrefix(t) + "%s"}, &out, &errs)
	if err != nil {
		t.Fatalf("run against %s: %v\nstdout:\n%s\nstderr:\n%s", srv, err, out.String(), errs.String())
	}
	if !strings.Contains(out.String(), "verified        all 500") {
		t.Fatalf("no verification line in:\n%s", out.String())
	}
	if err := run(ctx, []string{"-couchdb", "http://127.0.0.1:1", "-elasticsearch", srv.URL()}, &out, &errs); err == nil || !strings.Contains(err.Error(), "not both") {
		t.Fatalf("two primaries: %v", err)
	}
}

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

// TestQuickstartWithSpool runs the quickstart with a spool: every Store
// and ack goes through the spool, and every activation is verified in the
// primary.
func TestQuickstartWithSpool(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var out, errs bytes.Buffer
	dir := t.TempDir()
	err := run(ctx, []string{"-n", "2000", "-workers", "32", "-spool-dir", dir, "-spool-max-bytes", "67108864"}, &out, &errs)
	if err != nil {
		t.Fatalf("run with -spool-dir: %v\nstdout:\n%s\nstderr:\n%s", err, out.String(), errs.String())
	}
	for _, want := range []string{"verified        all 2000", "spool: " + dir, "spool failures 0"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("no %q in:\n%s", want, out.String())
		}
	}
	if err := run(ctx, []string{"-spool-dir", dir, "-spool-max-bytes", "1000"}, &out, &errs); err == nil || !strings.Contains(err.Error(), "WithSpoolMaxBytes") {
		t.Errorf("a spool of 1000 bytes: %v; want the option's error", err)
	}
}
