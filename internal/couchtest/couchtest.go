// Package couchtest gives tests a CouchDB-protocol server.
//
// When the environment variable COUCHDB_URL is set (for example
// "http://admin:secret@127.0.0.1:5984", a real Apache CouchDB 3.x), tests use
// that server. Otherwise the first call to [URL] in a test binary starts the
// test server in ./server — PouchDB in memory behind express-pouchdb, run by
// node — on 127.0.0.1 and a free port, installing its node modules with
// "npm ci" first when they are missing. Tests fail, never skip, when neither
// works.
//
// Wire [Main] into TestMain so that the server stops with the test binary:
//
//	func TestMain(m *testing.M) { couchtest.Main(m) }
//
// The node process also exits on its own when its stdin closes, so it never
// outlives a test binary that crashed.
//
// Every test works in a database of its own, named by [DBName]. Tests must not
// depend on behaviour only PouchDB has: the same tests run against CouchDB.
package couchtest

import (
	"context"
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
// CouchDB server instead of the bundled test server.
const EnvURL = "COUCHDB_URL"

var shared struct {
	once sync.Once
	srv  *Server
	url  string
	err  error
}

// URL returns the base URL of the CouchDB server of this test binary,
// without a trailing slash. It may carry credentials (from COUCHDB_URL). It
// fails the test when no server can be reached.
func URL(t testing.TB) string {
	t.Helper()
	u, err := sharedURL()
	if err != nil {
		t.Fatalf("couchtest: no CouchDB server for the tests: %v", err)
	}
	return u
}

func sharedURL() (string, error) {
	shared.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		if u := os.Getenv(EnvURL); u != "" {
			shared.url = strings.TrimSuffix(u, "/")
			if err := waitReady(ctx, http.DefaultClient, shared.url, 10*time.Second); err != nil {
				shared.err = fmt.Errorf("%s=%s is not reachable: %w (unset it to use the bundled test server)", EnvURL, redact(shared.url), err)
			}
			return
		}
		shared.srv, shared.err = Start(ctx)
		if shared.err == nil {
			shared.url = shared.srv.URL()
		}
	})
	return shared.url, shared.err
}

// SharedURL is URL for code without a testing.TB (examples, benchmarks
// setup): it returns the error instead of failing a test.
func SharedURL() (string, error) { return sharedURL() }

// Main runs the tests and stops the test server, if one was started, before
// the test binary exits. Call it from TestMain.
func Main(m *testing.M) {
	code := m.Run()
	Stop()
	os.Exit(code)
}

// Stop stops the test server, if one was started. A TestMain that stops
// other test servers too runs m.Run, then each package's Stop, instead of
// Main.
func Stop() {
	if shared.srv != nil {
		shared.srv.Close()
	}
}

// Shared reports whether a test server started by this test binary is
// running (false when COUCHDB_URL names the server).
func Shared() bool { return shared.srv != nil }

// redact hides the password of a URL for messages.
func redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "<unparsable URL>"
	}
	return u.Redacted()
}
