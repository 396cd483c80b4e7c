package couchtest

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
)

// The shared server's CPU time includes the view builds of its couchjs
// processes, which a benchmark must count as the server's work.
func TestSharedCPUTimeGrowsWithViewBuilds(t *testing.T) {
	needRelease(t)
	ctx := ctxT(t)
	base := URL(t)
	if k, err := SharedKind(); err != nil || k == External {
		// COUCHDB_URL: no process of ours to measure, and it says so.
		if _, err := SharedCPUTime(); err == nil {
			t.Errorf("SharedCPUTime on a server named by %s: want an error", EnvURL)
		}
		return
	}
	db := DBName(t)
	if err := CreateDB(ctx, base, db); err != nil {
		t.Fatal(err)
	}
	// A view that takes CPU time per document.
	ddoc := `{"views":{"slow":{"map":"function(doc){var x=0;for(var i=0;i<200000;i++){x+=i%7}emit(doc._id,x)}"}}}`
	if status, body, err := Do(ctx, http.MethodPut, base, "/"+db+"/_design/cpu", []byte(ddoc)); err != nil || status != http.StatusCreated {
		t.Fatalf("PUT design doc: %d %s %v", status, body, err)
	}
	docs := make([][]byte, 200)
	for i := range docs {
		docs[i] = fmt.Appendf(nil, `{"_id":"d%03d"}`, i)
	}
	if err := BulkDocs(ctx, base, db, docs); err != nil {
		t.Fatal(err)
	}
	before, err := SharedCPUTime()
	if err != nil {
		t.Fatal(err)
	}
	status, body, err := Do(ctx, http.MethodGet, base, "/"+db+"/_design/cpu/_view/slow?limit=1", nil)
	if err != nil || status != http.StatusOK || !strings.Contains(string(body), `"total_rows":200`) {
		t.Fatalf("GET view: %d %.200s %v", status, body, err)
	}
	after, err := SharedCPUTime()
	if err != nil {
		t.Fatal(err)
	}
	// 200 × 200,000 iterations take well over 100 ms in any JavaScript
	// engine; the VM alone would not count them.
	if after-before < 100*time.Millisecond {
		t.Errorf("the view build took %v of the server's CPU time: want ≥ 100ms (are couchjs processes counted?)", after-before)
	}
	t.Logf("view build: %v of CPU", after-before)
}
