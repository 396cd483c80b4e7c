package couchtest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

var dbSeq atomic.Int64

// DBName returns a database name unique to the test, even across test
// binaries sharing one server, and valid for CouchDB (lowercase, starting
// with a letter). The database is not created; if it exists on a shared
// server (URL's or ClusterURLs') when the test ends, it is deleted then.
func DBName(t testing.TB) string {
	t.Helper()
	var b strings.Builder
	b.WriteString("t_")
	for _, r := range strings.ToLower(t.Name()) {
		if b.Len() >= 48 {
			break
		}
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
	}
	name := fmt.Sprintf("%s_%d_%d_%d", b.String(), os.Getpid(), time.Now().UnixNano()%1e9, dbSeq.Add(1))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		for _, base := range sharedURLs() {
			_ = DeleteDB(ctx, base, name)
		}
		// The server may have closed the connections idle from before
		// the test (keep-alive 5 s), so this one may be new: close it
		// rather than leave its goroutines to a leak check.
		http.DefaultClient.CloseIdleConnections()
	})
	return name
}

// tempDBs are the databases TempDB named: Stop deletes them.
var tempDBs struct {
	sync.Mutex
	names []string
}

// TempDB returns a unique database name like DBName, for code without a
// testing.TB (runnable examples): Stop, which Main runs after the tests,
// deletes the database from the shared servers.
func TempDB(prefix string) string {
	name := fmt.Sprintf("%s_%d_%d_%d", prefix, os.Getpid(), time.Now().UnixNano()%1e9, dbSeq.Add(1))
	tempDBs.Lock()
	tempDBs.names = append(tempDBs.names, name)
	tempDBs.Unlock()
	return name
}

// deleteTempDBs deletes the databases TempDB named, where they exist.
func deleteTempDBs() {
	tempDBs.Lock()
	names := tempDBs.names
	tempDBs.names = nil
	tempDBs.Unlock()
	if len(names) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, base := range sharedURLs() {
		for _, name := range names {
			if err := DeleteDB(ctx, base, name); err != nil {
				fmt.Fprintf(os.Stderr, "couchtest: delete %s: %v\n", name, err)
			}
		}
	}
}

// DeleteDB deletes a database; a missing one is not an error.
func DeleteDB(ctx context.Context, base, db string) error {
	resp, err := do(ctx, http.MethodDelete, base+"/"+url.PathEscape(db), nil)
	if err != nil {
		return err
	}
	if resp.status == http.StatusNotFound {
		return nil
	}
	return resp.err()
}

// CreateDB creates a database; an existing one is not an error.
func CreateDB(ctx context.Context, base, db string) error {
	resp, err := do(ctx, http.MethodPut, base+"/"+url.PathEscape(db), nil)
	if err != nil {
		return err
	}
	if resp.status == http.StatusPreconditionFailed {
		return nil
	}
	return resp.err()
}

// BulkDocs writes JSON documents with one raw POST /{db}/_bulk_docs: the
// baseline that drivers' batch writes are measured against. Every document
// must be accepted; the error names those that were not.
func BulkDocs(ctx context.Context, base, db string, docs [][]byte) error {
	n := len(`{"docs":[]}`) + len(docs)
	for _, d := range docs {
		n += len(d)
	}
	body := make([]byte, 0, n)
	body = append(body, `{"docs":[`...)
	for i, d := range docs {
		if i > 0 {
			body = append(body, ',')
		}
		body = append(body, d...)
	}
	body = append(body, "]}"...)
	resp, err := do(ctx, http.MethodPost, base+"/"+url.PathEscape(db)+"/_bulk_docs", body)
	if err != nil {
		return err
	}
	if err := resp.err(); err != nil {
		return err
	}
	var results []struct {
		ID     string `json:"id"`
		Error  string `json:"error"`
		Reason string `json:"reason"`
	}
	if err := json.Unmarshal(resp.body, &results); err != nil {
		return fmt.Errorf("_bulk_docs: decode reply: %w", err)
	}
	var failed []string
	for _, r := range results {
		if r.Error != "" {
			failed = append(failed, fmt.Sprintf("%s: %s (%s)", r.ID, r.Error, r.Reason))
		}
	}
	if len(results) != len(docs) {
		return fmt.Errorf("_bulk_docs: %d results for %d documents", len(results), len(docs))
	}
	if len(failed) > 0 {
		return fmt.Errorf("_bulk_docs: %d of %d documents rejected: %s", len(failed), len(docs), strings.Join(failed, "; "))
	}
	return nil
}

// Do sends one raw request to the server and returns the status and body;
// for tests that check the wire (view queries exactly as OpenWhisk sends
// them). path is appended to base as is, so escape it.
func Do(ctx context.Context, method, base, path string, body []byte) (status int, reply []byte, err error) {
	resp, err := do(ctx, method, base+path, body)
	if err != nil {
		return 0, nil, err
	}
	return resp.status, resp.body, nil
}

type reply struct {
	method, url string
	status      int
	body        []byte
}

func (r *reply) err() error {
	if r.status >= 200 && r.status < 300 {
		return nil
	}
	return fmt.Errorf("%s %s: %d %s", r.method, redact(r.url), r.status, bytes.TrimSpace(r.body))
}

// do sends a request; credentials in base become Basic auth (net/http does
// that from the URL's userinfo).
func do(ctx context.Context, method, rawURL string, body []byte) (*reply, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, rawURL, rd)
	if err != nil {
		return nil, fmt.Errorf("couchtest: %s %s: bad URL", method, redact(rawURL))
	}
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	// No idle connection is kept: its goroutines would outlive the request
	// and fail the goroutine-leak checks of the tests that call this (the
	// database a test drops in its cleanup, after its leak snapshot).
	req.Close = true
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		// url.Error prints the URL; its Redacted form hides the password.
		return nil, fmt.Errorf("couchtest: %s %s: %w", method, redact(rawURL), unwrapURLError(err))
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("couchtest: %s %s: read reply: %w", method, redact(rawURL), err)
	}
	return &reply{method: method, url: rawURL, status: resp.StatusCode, body: b}, nil
}

func unwrapURLError(err error) error {
	if ue, ok := err.(*url.Error); ok {
		return ue.Err
	}
	return err
}
