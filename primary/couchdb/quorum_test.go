package couchdb_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/go-whisk/activationstore/internal/couchtest"
	"github.com/go-whisk/activationstore/primary/couchdb"
	"github.com/go-whisk/activationstore/store"
)

// With one node of three down, writes that wait for every copy reach two:
// CouchDB answers 202, the store checks the documents, and the writes
// succeed; a duplicate is still a conflict; List and Count still include
// every write. Once the node is back, no document has a second revision.
func TestWriteAllWithNodeDown(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	c, err := couchtest.StartCluster(ctx)
	require.NoError(t, err)
	defer func() {
		if t.Failed() {
			c.KeepFiles()
			return
		}
		c.Close()
	}()
	urls := c.URLs()
	const db = "quorum"
	rec := &recorder{}
	s, err := couchdb.New(ctx, urls[0], db, couchdb.WithHTTPClient(rec.client()))
	require.NoError(t, err)
	defer s.Close()

	var stored []*store.Activation
	write := func(what string) {
		t.Helper()
		a := activation("quorum", "act", int64(len(stored)+1))
		_, err := s.Store(ctx, a, uc)
		require.NoError(t, err, "Store %s", what)
		stored = append(stored, a)
		batch := []*store.Activation{activation("quorum", "act", int64(len(stored)+1)), activation("quorum", "act", int64(len(stored)+2))}
		res, err := s.StoreBatch(ctx, batch, uc)
		require.NoError(t, err, "StoreBatch %s", what)
		for i, r := range res {
			require.NoError(t, r.Err, "StoreBatch %s: result %d", what, i)
		}
		stored = append(stored, batch...)
		n, err := s.Count(ctx, store.Query{Namespace: "quorum"}, uc)
		require.NoError(t, err, "Count %s", what)
		assert.Equal(t, len(stored), n, "Count %s: every write", what)
		got, err := s.List(ctx, store.Query{Namespace: "quorum"}, uc)
		require.NoError(t, err, "List %s", what)
		assert.Len(t, got, len(stored), "List %s: every write", what)
		for _, a := range []*store.Activation{stored[0], a} {
			_, err = s.Store(ctx, a, uc)
			assert.ErrorIs(t, err, store.ErrConflict, "Store %s: a duplicate", what)
			res, err = s.StoreBatch(ctx, []*store.Activation{a}, uc)
			require.NoError(t, err)
			assert.ErrorIs(t, res[0].Err, store.ErrConflict, "StoreBatch %s: a duplicate", what)
		}
	}
	write("with every node up")
	checks := func() int {
		n := 0
		for _, r := range rec.requests() {
			if strings.HasSuffix(r.URL.Path, "/_bulk_get") {
				n++
			}
		}
		return n
	}
	assert.Zero(t, checks(), "every copy took every write: nothing to check")

	require.NoError(t, c.Stop(2))
	write("with node 2 stopped")
	assert.Positive(t, checks(), "writes answered 202 are checked")
	deleted := stored[len(stored)-1]
	require.NoError(t, s.Delete(ctx, deleted.Namespace, deleted.ActivationID, uc))
	require.NoError(t, c.Restart(ctx, 2))

	// Node 2 catches up by internal replication; then every document, on
	// every node, has one revision, and the deleted one none.
	for i, u := range urls {
		deadline := time.Now().Add(time.Minute)
		for {
			var bad []string
			for _, a := range stored {
				status, body, err := couchtest.Do(ctx, http.MethodGet, u, "/"+db+"/"+strings.ReplaceAll(a.DocID(), "/", "%2F")+"?conflicts=true&deleted_conflicts=true&r=3", nil)
				require.NoError(t, err)
				switch {
				case a == deleted && status != http.StatusNotFound,
					a != deleted && (status != http.StatusOK || strings.Contains(string(body), "conflicts")):
					bad = append(bad, a.DocID()+": "+string(body))
				}
			}
			if len(bad) == 0 {
				break
			}
			require.True(t, time.Now().Before(deadline), "node %d: %v", i, bad)
			time.Sleep(200 * time.Millisecond)
		}
	}
	assert.Zero(t, s.ConflictsRemoved(), "no write met another revision")
	require.NoError(t, couchtest.DeleteDB(ctx, urls[0], db))
}
