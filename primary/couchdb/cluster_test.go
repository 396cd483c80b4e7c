package couchdb_test

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/go-whisk/activationstore/internal/couchtest"
	"github.com/go-whisk/activationstore/primary/couchdb"
	"github.com/go-whisk/activationstore/store"
)

// checkMissingDB asserts that every operation of s reports its deleted
// database as missing: never as a transient failure to retry forever.
func checkMissingDB(t *testing.T, ctx context.Context, s *couchdb.Store) {
	t.Helper()
	a := activation("ns", "act", 1)
	_, err := s.Store(ctx, a, uc)
	assert.False(t, couchdb.IsTransient(err), "store: %v", err)
	assert.ErrorContains(t, err, "does not exist", "store")
	_, err = s.StoreBatch(ctx, []*store.Activation{activation("ns", "act", 2)}, uc)
	assert.False(t, couchdb.IsTransient(err), "store batch: %v", err)
	assert.ErrorContains(t, err, "does not exist", "store batch")
	_, err = s.Get(ctx, a.Namespace, a.ActivationID, uc)
	assert.ErrorIs(t, err, store.ErrNotFound, "get")
	assert.False(t, couchdb.IsTransient(err), "get: %v", err)
	err = s.Delete(ctx, a.Namespace, a.ActivationID, uc)
	assert.ErrorIs(t, err, store.ErrNotFound, "delete")
	_, err = s.List(ctx, store.Query{Namespace: "ns"}, uc)
	assert.False(t, couchdb.IsTransient(err), "list: %v", err)
	assert.ErrorContains(t, err, "missing", "list")
	_, err = s.Count(ctx, store.Query{Namespace: "ns"}, uc)
	assert.False(t, couchdb.IsTransient(err), "count: %v", err)
	assert.ErrorContains(t, err, "missing", "count")
}

// Right after a database is deleted, a cluster answers 500 "No DB shards
// could be opened." for a while; that is a missing database too.
func TestMissingDatabaseOnCluster(t *testing.T) {
	urls := couchtest.ClusterURLs(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	sawNoShards := 0
	for round := range 6 {
		db := couchtest.DBName(t)
		s, err := couchdb.New(ctx, urls[round%len(urls)], db)
		require.NoError(t, err)
		_, err = s.Store(ctx, activation("ns", "act", 1), uc)
		require.NoError(t, err)
		require.NoError(t, couchtest.DeleteDB(ctx, urls[(round+1)%len(urls)], db))
		if round%2 == 1 {
			// How the cluster answers a raw request in that window.
			status, body, err := couchtest.Do(ctx, http.MethodGet, urls[round%len(urls)], "/"+url.PathEscape(db)+"/_all_docs", nil)
			require.NoError(t, err)
			if status == http.StatusInternalServerError && strings.Contains(string(body), "No DB shards") {
				sawNoShards++
			}
		}
		checkMissingDB(t, ctx, s)
		require.NoError(t, s.Close())
	}
	t.Logf("raw _all_docs answered 500 \"No DB shards could be opened.\" in %d of 3 probes", sawNoShards)
}

// A store given every node of a cluster keeps working while the node it
// talks to is down, and moves again when the next one goes.
func TestNodeFailoverOnCluster(t *testing.T) {
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
	host := func(i int) string {
		u, err := url.Parse(urls[i])
		require.NoError(t, err)
		return u.Host
	}
	// Credentials once, in the first URL.
	list := urls[0]
	for _, u := range urls[1:] {
		p, err := url.Parse(u)
		require.NoError(t, err)
		p.User = nil
		list += "," + p.String()
	}
	s, err := couchdb.New(ctx, list, "failover", couchdb.WithTimeout(20*time.Second))
	require.NoError(t, err)
	defer s.Close()
	assert.Equal(t, host(0), s.Node())

	var stored []*store.Activation
	write := func(what string) {
		t.Helper()
		a := activation("failover", "act", int64(len(stored)+1))
		_, err := s.Store(ctx, a, uc)
		require.NoError(t, err, "Store %s", what)
		stored = append(stored, a)
		batch := []*store.Activation{activation("failover", "act", int64(len(stored)+1)), activation("failover", "act", int64(len(stored)+2))}
		res, err := s.StoreBatch(ctx, batch, uc)
		require.NoError(t, err, "StoreBatch %s", what)
		for i, r := range res {
			require.NoError(t, r.Err, "StoreBatch %s: result %d", what, i)
		}
		stored = append(stored, batch...)
		got, err := s.Get(ctx, a.Namespace, a.ActivationID, uc)
		require.NoError(t, err, "Get %s", what)
		assert.Equal(t, a.ActivationID, got.ActivationID)
		n, err := s.Count(ctx, store.Query{Namespace: "failover"}, uc)
		require.NoError(t, err, "Count %s", what)
		assert.LessOrEqual(t, n, len(stored), "Count %s", what)
	}
	write("with every node up")

	require.NoError(t, c.Kill(0))
	write("with node 0 killed")
	assert.NotEqual(t, host(0), s.Node(), "the store moved off the killed node")
	assert.EqualValues(t, 1, s.NodeMoves())

	require.NoError(t, c.Restart(ctx, 0))
	now := s.Node()
	var cur int
	for i := range urls {
		if host(i) == now {
			cur = i
		}
	}
	require.NoError(t, c.Stop(cur))
	write("with the current node stopped")
	assert.NotEqual(t, now, s.Node())
	assert.EqualValues(t, 2, s.NodeMoves())
	require.NoError(t, c.Restart(ctx, cur))

	// Everything written is there, on every node.
	for i := range urls {
		one, err := couchdb.New(ctx, urls[i], "failover")
		require.NoError(t, err)
		for _, a := range stored {
			_, err := one.Get(ctx, a.Namespace, a.ActivationID, uc)
			assert.NoError(t, err, "node %d: %s", i, a.ActivationID)
		}
		require.NoError(t, one.Close())
	}
	require.NoError(t, couchtest.DeleteDB(ctx, urls[0], "failover"))
}

func TestNodeURLsAreChecked(t *testing.T) {
	ctx := ctxT(t)
	for _, tc := range []struct{ urls, want string }{
		{"http://a:1,ftp://b:2", "must look like"},
		{"http://u:p@127.0.0.1:1,http://v:q@127.0.0.1:2", "different credentials"},
		{"http://127.0.0.1:1/x,http://127.0.0.1:2/y", "different path prefixes"},
		{"http://127.0.0.1:1,http://127.0.0.1:1", "listed twice"},
	} {
		_, err := couchdb.New(ctx, tc.urls, "db")
		assert.ErrorContains(t, err, tc.want, tc.urls)
		if err != nil {
			assert.NotContains(t, err.Error(), ":q@", "no password in errors")
		}
	}
	// A comma inside a password does not split the URL: the one node is
	// tried (and refuses), nothing is parsed as a second node.
	_, err := couchdb.New(ctx, "http://user:pa,ss@127.0.0.1:1", "db", couchdb.WithTimeout(2*time.Second))
	require.Error(t, err)
	assert.True(t, couchdb.IsTransient(err), "%v", err)
	assert.NotContains(t, err.Error(), "pa,ss")
}
