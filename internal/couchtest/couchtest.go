// Package couchtest gives tests a CouchDB server.
//
// Which one, in this order:
//   - COUCHDB_URL set: that server (for example
//     "http://admin:secret@127.0.0.1:5984"), or the comma-separated URLs of
//     several nodes of one cluster.
//   - A real Apache CouchDB from a release tarball: COUCHDB_RELEASE names it
//     (a couchdb-*.tar.gz, a folder holding one, or an extracted release);
//     else shared/couchdb/ beside the module root (CI clones the repository
//     with a read-only shared/ beside it) or beside any folder above it. It
//     is extracted once into the user cache dir
//     (~/.cache/activationstore/couchdb) under a file lock. COUCHTEST=single
//     (the default) makes the tests share one node; COUCHTEST=cluster a
//     3-node cluster (n = 3, q = 2) on 127.0.0.1.
//   - Where no release is found (or under COUCHTEST=pouchdb): the test
//     server in ./server, PouchDB in memory behind express-pouchdb, run by
//     node, its modules installed with "npm ci" when missing.
//
// Tests fail, never skip, when none works.
//
// Every CouchDB node started here has its configuration, data and log in a
// temporary folder, a unique Erlang node name, a free HTTP port, a random
// admin password (in the URLs handed out) and, with the other nodes of its
// server, a private epmd on a free port and one cookie. The first call to
// [URL] in a test binary starts the shared server; its tests share it, as
// internal/kafkatest's broker. [StartCluster] gives a test a cluster of its
// own whose nodes it may Stop, Kill and Restart.
//
// Wire [Main] into TestMain so that the servers stop with the test binary:
//
//	func TestMain(m *testing.M) { couchtest.Main(m) }
//
// On Linux the kernel kills the CouchDB nodes and their epmd when the test
// binary dies, even by SIGKILL; the PouchDB server exits when its stdin
// closes. So no server outlives a test binary that crashed.
//
// Every test works in a database of its own, named by [DBName], deleted
// when the test ends. Tests must not depend on behaviour only PouchDB has.
package couchtest

import (
	"github.com/go-whisk/activationstore/internal/childproc"

	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

// EnvURL names the environment variable that points tests at an existing
// CouchDB server instead of one this package starts: one base URL, or the
// comma-separated URLs of several nodes of one cluster (URL answers the
// first, URLs all of them).
const EnvURL = "COUCHDB_URL"

// EnvMode names the environment variable that picks what the tests share
// when COUCHDB_URL is unset: "single" (a real CouchDB node, the default
// when a release is found), "cluster" (a real 3-node cluster), or
// "pouchdb" (the fallback, the default when no release is found).
const EnvMode = "COUCHTEST"

// sharedServer is one server a test binary's tests share: started at the
// first use, stopped by Stop.
type sharedServer struct {
	once sync.Once
	mu   sync.Mutex
	srv  *Server
	kind Kind
	urls []string
	err  error

	failed childproc.FailedTests // keep its files when one failed
}

var (
	shared        sharedServer // what URL serves
	sharedCluster sharedServer // what ClusterURLs serves, when not shared
)

var errStopped = errors.New("couchtest: the shared server was stopped (Stop or Main ran)")

// Selected is the kind of server the tests share, from the environment:
// External when COUCHDB_URL is set, else what COUCHTEST says, else Single
// when a CouchDB release is found and PouchDB when none is.
func Selected() (Kind, error) {
	if os.Getenv(EnvURL) != "" {
		return External, nil
	}
	return startKind()
}

// startKind is what Start starts: COUCHTEST, or Single when a release is
// found, PouchDB when none is.
func startKind() (Kind, error) {
	switch m := Kind(strings.ToLower(strings.TrimSpace(os.Getenv(EnvMode)))); m {
	case "":
		if _, err := releaseRoot(); err != nil {
			if errors.Is(err, errNoRelease) {
				return PouchDB, nil
			}
			return "", err
		}
		return Single, nil
	case Single, Cluster:
		if _, err := releaseRoot(); err != nil {
			return "", fmt.Errorf("%s=%s needs an Apache CouchDB release: %w", EnvMode, m, err)
		}
		return m, nil
	case PouchDB:
		return m, nil
	default:
		return "", fmt.Errorf("%s=%q: want single, cluster or pouchdb", EnvMode, m)
	}
}

// URL returns the base URL of the CouchDB server of this test binary,
// without a trailing slash; node 0's when it is a cluster. It may carry
// credentials. It fails the test when no server can be reached.
func URL(t testing.TB) string {
	t.Helper()
	return URLs(t)[0]
}

// URLs returns the base URLs of every node of the server of this test
// binary (one but for a cluster), node 0 first.
func URLs(t testing.TB) []string {
	t.Helper()
	urls, err := shared.get(startShared)
	if err != nil {
		t.Fatalf("couchtest: no CouchDB server for the tests: %v", err)
	}
	shared.watch(t)
	return append([]string(nil), urls...)
}

// SharedKind is the kind of the server URL serves; it starts it if needed.
func SharedKind() (Kind, error) {
	_, err := shared.get(startShared)
	shared.mu.Lock()
	defer shared.mu.Unlock()
	return shared.kind, err
}

// ClusterURLs returns the base URLs of the nodes of a real CouchDB cluster
// (n = 3) shared by this test binary's tests: the shared server when it is
// a cluster (COUCHTEST=cluster), the nodes COUCHDB_URL lists when it lists
// several, else a cluster started for these tests from the release. It fails
// the test when there is none. Tests that stop nodes use StartCluster.
func ClusterURLs(t testing.TB) []string {
	t.Helper()
	if k, err := Selected(); err == nil && (k == Cluster || k == External && len(envURLs()) > 1) {
		return URLs(t)
	}
	urls, err := sharedCluster.get(func(ctx context.Context) (*Server, Kind, []string, error) {
		s, err := StartCluster(ctx)
		if err != nil {
			return nil, "", nil, err
		}
		announce(s)
		return s, Cluster, s.URLs(), nil
	})
	if err != nil {
		t.Fatalf("couchtest: no CouchDB cluster for the tests: %v", err)
	}
	sharedCluster.watch(t)
	return append([]string(nil), urls...)
}

func (sh *sharedServer) get(start func(context.Context) (*Server, Kind, []string, error)) ([]string, error) {
	sh.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		srv, kind, urls, err := start(ctx)
		sh.mu.Lock()
		sh.srv, sh.kind, sh.urls, sh.err = srv, kind, urls, err
		sh.mu.Unlock()
	})
	sh.mu.Lock()
	defer sh.mu.Unlock()
	return sh.urls, sh.err
}

// watch remembers t if it fails, so that Stop keeps the server's files.
func (sh *sharedServer) watch(t testing.TB) { sh.failed.Watch(t) }

func envURLs() []string {
	var out []string
	for u := range strings.SplitSeq(os.Getenv(EnvURL), ",") {
		if u = strings.TrimSuffix(strings.TrimSpace(u), "/"); u != "" {
			out = append(out, u)
		}
	}
	return out
}

func startShared(ctx context.Context) (*Server, Kind, []string, error) {
	if urls := envURLs(); len(urls) > 0 {
		for _, u := range urls {
			if err := waitReady(ctx, http.DefaultClient, u, 10*time.Second); err != nil {
				return nil, External, nil, fmt.Errorf("%s=%s is not reachable: %w (unset it to use the bundled test server)", EnvURL, redact(u), err)
			}
		}
		return nil, External, urls, nil
	}
	s, err := Start(ctx)
	if err != nil {
		return nil, "", nil, err
	}
	announce(s)
	return s, s.Kind(), s.URLs(), nil
}

// announce tells on stderr which server the tests use, as kafkatest does.
func announce(s *Server) {
	if s.couch == nil {
		return
	}
	fmt.Fprintf(os.Stderr, "couchtest: shared CouchDB (%s, %d node(s)) ready in %v at %s (logs: %s)\n",
		s.Kind(), s.Nodes(), s.Startup().Round(time.Millisecond), redact(s.URL()), s.Logs())
}

// SharedURL is URL for code without a testing.TB (examples, benchmarks
// setup): it returns the error instead of failing a test.
func SharedURL() (string, error) {
	urls, err := shared.get(startShared)
	if err != nil {
		return "", err
	}
	return urls[0], nil
}

// SharedCPUTime is CPUTime of the server URL returns, for benchmarks. It
// fails when the server was not started by this test binary (COUCHDB_URL).
func SharedCPUTime() (time.Duration, error) {
	shared.mu.Lock()
	s := shared.srv
	shared.mu.Unlock()
	if s == nil {
		return 0, errors.New("couchtest: no CouchDB server started by this test binary (COUCHDB_URL names an external one)")
	}
	return s.CPUTime()
}

// sharedURL is the shared server's URL if one was started (or named), for
// cleanups.
func sharedURLs() []string {
	var out []string
	for _, sh := range []*sharedServer{&shared, &sharedCluster} {
		sh.mu.Lock()
		if sh.err == nil && len(sh.urls) > 0 {
			out = append(out, sh.urls[0])
		}
		sh.mu.Unlock()
	}
	return out
}

// Main runs the tests and stops the shared servers, if any were started,
// before the test binary exits. Call it from TestMain.
func Main(m *testing.M) { childproc.RunThenStop(m, Stop) }

// Stop stops the shared servers, if any were started, and removes their
// files unless a test using them failed (then their path is printed). A
// TestMain that stops other test servers too runs m.Run, then each
// package's Stop, instead of Main. Later uses fail.
func Stop() {
	deleteTempDBs()
	for _, sh := range []*sharedServer{&shared, &sharedCluster} {
		sh.once.Do(func() {}) // no start after this
		sh.mu.Lock()
		s, failed := sh.srv, sh.failed.Names()
		sh.srv, sh.urls, sh.err = nil, nil, errStopped
		sh.mu.Unlock()
		if s == nil {
			continue
		}
		if len(failed) > 0 && s.couch != nil {
			fmt.Fprintf(os.Stderr, "couchtest: tests %v failed; ", failed)
			s.KeepFiles()
			continue
		}
		s.Close()
	}
}

// Shared reports whether a test server started by this test binary is
// running (false when COUCHDB_URL names the server).
func Shared() bool {
	shared.mu.Lock()
	defer shared.mu.Unlock()
	return shared.srv != nil
}

// redact hides the password of a URL for messages.
func redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "<unparsable URL>"
	}
	return u.Redacted()
}
