package couchdb_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/go-whisk/activationstore/internal/couchtest"
	"github.com/go-whisk/activationstore/internal/faultproxy"
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

// While a cluster drops a deleted database's shards it answers 500 ("No DB
// shards could be opened.", or internal_server_error per document); that is
// a missing database too. Writers and readers run through the deletion on
// every node: no operation that starts once the deletion has returned may
// report a transient failure, and every one reports the database missing.
func TestMissingDatabaseOnCluster(t *testing.T) {
	urls := couchtest.ClusterURLs(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var raw500 atomic.Int64
	for round := range 4 {
		db := couchtest.DBName(t)
		stores := make([]*couchdb.Store, len(urls))
		for i, u := range urls {
			s, err := couchdb.New(ctx, u, db)
			require.NoError(t, err)
			defer s.Close()
			stores[i] = s
		}
		_, err := stores[0].Store(ctx, activation("ns", "act", 1), uc)
		require.NoError(t, err)

		var deleted atomic.Bool
		var wg sync.WaitGroup
		var mu sync.Mutex
		var after []string // failures of operations started after the deletion
		for i, s := range stores {
			wg.Go(func() {
				for k := 0; ; k++ {
					wasDeleted := deleted.Load()
					var err error
					switch k % 3 {
					case 0:
						_, err = s.Store(ctx, activation("ns", "act", int64(k)), uc)
					case 1:
						var res []store.BatchResult
						res, err = s.StoreBatch(ctx, []*store.Activation{activation("ns", "act", int64(k))}, uc)
						if err == nil && res[0].Err != nil {
							err = res[0].Err
						}
					case 2:
						_, err = s.Count(ctx, store.Query{Namespace: "ns"}, uc)
					}
					// The same window, as a raw request sees it.
					if st, body, _ := couchtest.Do(ctx, http.MethodGet, urls[(i+1)%len(urls)], "/"+url.PathEscape(db)+"/_all_docs?limit=1", nil); st == http.StatusInternalServerError {
						raw500.Add(1)
						t.Logf("raw _all_docs: 500 %s", bytes.TrimSpace(body))
					}
					if !wasDeleted {
						continue
					}
					if err == nil || couchdb.IsTransient(err) ||
						!strings.Contains(err.Error(), "does not exist") && !strings.Contains(err.Error(), "missing") {
						mu.Lock()
						after = append(after, fmt.Sprintf("node %d op %d: %v", i, k%3, err))
						mu.Unlock()
					}
					if k > 30 {
						return
					}
				}
			})
		}
		time.Sleep(100 * time.Millisecond)
		require.NoError(t, couchtest.DeleteDB(ctx, urls[round%len(urls)], db))
		deleted.Store(true)
		wg.Wait()
		assert.Empty(t, after, "round %d: operations after the deletion must report the database missing", round)
		checkMissingDB(t, ctx, stores[round%len(stores)])
	}
	t.Logf("raw requests answered 500 during or after the deletions %d times", raw500.Load())
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

// noShardsTransport answers as a cluster node whose shard map is stale
// does, right after a database was deleted: where the server says the
// database does not exist (404), it says 500 "No DB shards could be
// opened." instead, except to HEAD /{db}, which reads the database list.
type noShardsTransport struct {
	db       string
	replaced atomic.Int64
}

func (n *noShardsTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil || resp.StatusCode != http.StatusNotFound || req.Method == http.MethodHead ||
		!strings.HasPrefix(req.URL.Path, "/"+n.db) {
		return resp, err
	}
	body, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if !bytes.Contains(body, []byte("Database does not exist")) && !bytes.Contains(body, []byte("no_db_file")) &&
		!bytes.Contains(body, []byte("missing")) {
		resp.Body = io.NopCloser(bytes.NewReader(body))
		return resp, nil
	}
	n.replaced.Add(1)
	reply := []byte(`{"error":"internal_server_error","reason":"No DB shards could be opened.","ref":1161384954}`)
	resp.StatusCode, resp.Status = http.StatusInternalServerError, "500 Internal Server Error"
	resp.Body = io.NopCloser(bytes.NewReader(reply))
	resp.ContentLength = int64(len(reply))
	resp.Header.Del("Content-Length")
	return resp, nil
}

// The cluster's 500 "No DB shards could be opened." for a deleted database
// is reported as the missing database it is, not as a failure to retry.
func TestNoShardsAnswerIsMissingDatabase(t *testing.T) {
	base, db := couchtest.URL(t), couchtest.DBName(t)
	tr := &noShardsTransport{db: db}
	ctx := ctxT(t)
	s, err := couchdb.New(ctx, base, db, couchdb.WithHTTPClient(&http.Client{Transport: tr}))
	require.NoError(t, err)
	defer s.Close()
	require.NoError(t, couchtest.DeleteDB(ctx, base, db))
	checkMissingDB(t, ctx, s)
	assert.Positive(t, tr.replaced.Load(), "the server's answers were replaced")
}

// Two "nodes" (proxies to one server): a node that stops answering without
// refusing (stalled) makes a request run out of time, and the next
// requests go to the other node; a node that refuses is left at once.
func TestNodeFailoverHungAndDroppedNode(t *testing.T) {
	base, err := url.Parse(couchtest.URL(t))
	require.NoError(t, err)
	pa, pb := faultproxy.Start(t, base.Host), faultproxy.Start(t, base.Host)
	a, b := *base, *base
	a.Host, b.Host = pa.Addr(), pb.Addr()
	b.User = nil
	ctx := ctxT(t)
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	s, err := couchdb.New(ctx, a.String()+","+b.String(), couchtest.DBName(t),
		couchdb.WithTimeout(5*time.Second), couchdb.WithHTTPClient(&http.Client{Transport: tr}))
	require.NoError(t, err)
	defer s.Close()
	assert.Equal(t, pa.Addr(), s.Node())

	// A new connection to the stalled node: accepted, never answered. (A
	// kept-alive one would be closed by the stall and fail at once.)
	tr.CloseIdleConnections()
	pa.Stall()
	_, err = s.Store(ctx, activation("ns", "act", 1), uc)
	assert.True(t, couchdb.IsTransient(err), "a stalled node times out: %v", err)
	assert.Equal(t, pb.Addr(), s.Node(), "the next requests go to the other node")
	a1 := activation("ns", "act", 2)
	_, err = s.Store(ctx, a1, uc)
	require.NoError(t, err)
	require.NoError(t, pa.Restore())

	pb.Drop()
	got, err := s.Get(ctx, a1.Namespace, a1.ActivationID, uc)
	require.NoError(t, err, "a dropped node is left at once")
	assert.Equal(t, a1.ActivationID, got.ActivationID)
	assert.Equal(t, pa.Addr(), s.Node())
	assert.EqualValues(t, 2, s.NodeMoves())
	require.NoError(t, pb.Restore())
}
