package couchtest

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"
)

func TestMain(m *testing.M) {
	switch os.Getenv("COUCHTEST_CHILD") {
	case "1":
		runChild()
		return
	case "tempdb":
		runTempDBChild()
		return
	}
	Main(m)
}

// runChild starts a server, prints its URL and waits to be killed.
func runChild() {
	s, err := Start(context.Background())
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	fmt.Println(s.URL())
	select {}
}

// runTempDBChild creates a database named by TempDB on the server of
// COUCHDB_URL, prints its name and ends as Main does.
func runTempDBChild() {
	base, err := SharedURL()
	if err == nil {
		name := TempDB("example")
		if err = CreateDB(context.Background(), base, name); err == nil {
			fmt.Println(name)
		}
	}
	if err != nil {
		fmt.Println("error:", err)
	}
	Stop()
}

// Databases named by TempDB (examples have no testing.TB) are deleted when
// the test binary ends.
func TestTempDBDeletedAtStop(t *testing.T) {
	base := URL(t)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "COUCHTEST_CHILD=tempdb", EnvURL+"="+base)
	out, err := cmd.Output()
	name := strings.TrimSpace(string(out))
	if err != nil || !strings.HasPrefix(name, "example_") {
		t.Fatalf("child: %q %v", out, err)
	}
	status, body, err := Do(ctxT(t), http.MethodGet, base, "/"+name, nil)
	if err != nil || status != http.StatusNotFound {
		t.Fatalf("GET /%s after the child ended: %d %s %v, want 404", name, status, body, err)
	}
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

var validDBName = regexp.MustCompile(`^[a-z][a-z0-9_$()+/-]*$`)

func TestDBNameIsValidAndUnique(t *testing.T) {
	seen := map[string]bool{}
	for range 100 {
		n := DBName(t)
		if !validDBName.MatchString(n) || len(n) > 238 {
			t.Fatalf("DBName %q is not a valid CouchDB database name", n)
		}
		if seen[n] {
			t.Fatalf("DBName repeated %q", n)
		}
		seen[n] = true
	}
}

func TestDocumentETagIsRevision(t *testing.T) {
	ctx := ctxT(t)
	base, db := URL(t), DBName(t)
	if err := CreateDB(ctx, base, db); err != nil {
		t.Fatal(err)
	}
	if err := CreateDB(ctx, base, db); err != nil {
		t.Fatalf("CreateDB on an existing database: %v", err)
	}
	docPath := "/" + db + "/" + url.PathEscape("guest/0123")
	status, body, err := Do(ctx, http.MethodPut, base, docPath, []byte(`{"a":1}`))
	if err != nil || status != http.StatusCreated {
		t.Fatalf("PUT: %d %s %v", status, body, err)
	}
	var put struct{ ID, Rev string }
	if err := json.Unmarshal(body, &put); err != nil || put.ID != "guest/0123" {
		t.Fatalf("PUT reply %s: %v (id must stay one segment)", body, err)
	}
	for _, method := range []string{http.MethodGet, http.MethodHead} {
		req, _ := http.NewRequestWithContext(ctx, method, base+docPath, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if got, want := resp.Header.Get("ETag"), `"`+put.Rev+`"`; got != want {
			t.Errorf("%s ETag = %q, want %q", method, got, want)
		}
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodDelete, base+docPath+"?rev="+put.Rev, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("ETag"), `"2-`) {
		t.Errorf("DELETE: %s, ETag %q; want 200 and the tombstone's revision", resp.Status, resp.Header.Get("ETag"))
	}
	status, _, _ = Do(ctx, http.MethodGet, base, docPath, nil)
	if status != http.StatusNotFound {
		t.Errorf("GET after DELETE: %d, want 404", status)
	}
}

func TestBulkDocs(t *testing.T) {
	ctx := ctxT(t)
	base, db := URL(t), DBName(t)
	if err := CreateDB(ctx, base, db); err != nil {
		t.Fatal(err)
	}
	docs := [][]byte{[]byte(`{"_id":"a"}`), []byte(`{"_id":"b"}`)}
	if err := BulkDocs(ctx, base, db, docs); err != nil {
		t.Fatal(err)
	}
	err := BulkDocs(ctx, base, db, [][]byte{[]byte(`{"_id":"c"}`), []byte(`{"_id":"a"}`)})
	if err == nil || !strings.Contains(err.Error(), "1 of 2") || !strings.Contains(err.Error(), "conflict") {
		t.Fatalf("BulkDocs with a duplicate: %v, want 1 of 2 rejected as conflict", err)
	}
	if err := BulkDocs(ctx, base, "missing_"+db, docs); err == nil {
		t.Fatal("BulkDocs to a missing database succeeded")
	}
}

// refuseMarked is a validation function that refuses documents marked
// "refuse".
const refuseMarked = `{"validate_doc_update": "function (doc) { if (doc.refuse) { throw({forbidden: 'refused by test'}); } }"}`

// refusingDB starts a server of its own with opts and returns its URL and
// a database "v" in which refuseMarked is installed.
func refusingDB(ctx context.Context, t *testing.T, opts ...Option) string {
	t.Helper()
	s, err := Start(ctx, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	if err := CreateDB(ctx, s.URL(), "v"); err != nil {
		t.Fatal(err)
	}
	if status, body, err := Do(ctx, http.MethodPut, s.URL(), "/v/_design/refuse", []byte(refuseMarked)); err != nil || status != http.StatusCreated {
		t.Fatalf("install the validation function: %d %s %v", status, body, err)
	}
	return s.URL()
}

func TestWithValidationRunsValidateDocUpdate(t *testing.T) {
	ctx := ctxT(t)
	base := refusingDB(ctx, t, WithValidation())
	// As CouchDB: _bulk_docs answers 201, one result per document in the
	// order of the request, the refused one with its error.
	status, body, err := Do(ctx, http.MethodPost, base, "/v/_bulk_docs",
		[]byte(`{"docs":[{"_id":"a"},{"_id":"b","refuse":true},{"_id":"c"}]}`))
	if err != nil || status != http.StatusCreated {
		t.Fatalf("_bulk_docs: %d %s %v", status, body, err)
	}
	var results []struct{ ID, Error, Reason string }
	if err := json.Unmarshal(body, &results); err != nil {
		t.Fatalf("_bulk_docs reply %s: %v", body, err)
	}
	want := []struct{ ID, Error, Reason string }{{ID: "a"}, {ID: "b", Error: "forbidden", Reason: "refused by test"}, {ID: "c"}}
	if fmt.Sprint(results) != fmt.Sprint(want) {
		t.Errorf("_bulk_docs results %+v, want %+v (request order)", results, want)
	}
	if status, body, _ := Do(ctx, http.MethodPut, base, "/v/d", []byte(`{"refuse":true}`)); status != http.StatusForbidden {
		t.Errorf("PUT of a refused document: %d %s, want 403", status, body)
	}
}

func TestWithoutValidationDocumentsPass(t *testing.T) {
	ctx := ctxT(t)
	kind, err := startKind()
	if err != nil {
		t.Fatal(err)
	}
	base := refusingDB(ctx, t)
	err = BulkDocs(ctx, base, "v", [][]byte{[]byte(`{"_id":"a","refuse":true}`)})
	if kind == PouchDB {
		if err != nil {
			t.Errorf("without WithValidation, the PouchDB server does not run validate_doc_update: %v", err)
		}
		return
	}
	if err == nil || !strings.Contains(err.Error(), "forbidden") {
		t.Errorf("CouchDB always runs validate_doc_update: %v, want forbidden", err)
	}
}

func TestDeleteDBMissingIsNotAnError(t *testing.T) {
	if err := DeleteDB(ctxT(t), URL(t), DBName(t)); err != nil {
		t.Fatal(err)
	}
}

func TestServerCloseStopsNode(t *testing.T) {
	s, err := Start(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := waitReady(ctxT(t), http.DefaultClient, s.URL(), time.Second); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if s.pouch != nil && s.pouch.cmd.ProcessState == nil {
		t.Fatal("Close returned before the node process exited")
	}
	if s.Running(0) {
		t.Fatal("Close returned before the CouchDB node exited")
	}
	if resp, err := http.Get(s.URL() + "/"); err == nil {
		resp.Body.Close()
		t.Fatal("server still answers after Close")
	}
}

// A test binary killed outright (no Main, no cleanup) leaves no node process.
func TestServerDiesWithParent(t *testing.T) {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "COUCHTEST_CHILD=1")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "http://") {
		t.Fatalf("child: %q %v", line, err)
	}
	u := strings.TrimSpace(line)
	if err := waitReady(ctxT(t), http.DefaultClient, u, 5*time.Second); err != nil {
		t.Fatalf("child's server: %v", err)
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get(u + "/")
		if err != nil {
			return // gone
		}
		resp.Body.Close()
		if time.Now().After(deadline) {
			t.Fatalf("node server at %s still up 10 s after its parent was killed", u)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestRedact(t *testing.T) {
	got := redact("http://admin:s3cret@127.0.0.1:5984/db")
	if strings.Contains(got, "s3cret") || !strings.Contains(got, "127.0.0.1:5984") {
		t.Fatalf("redact = %q", got)
	}
}
