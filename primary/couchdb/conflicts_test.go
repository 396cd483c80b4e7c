package couchdb_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/go-whisk/activationstore/internal/couchtest"
	"github.com/go-whisk/activationstore/primary/couchdb"
	"github.com/go-whisk/activationstore/store"
)

// leafRevs reads every leaf revision of a document from every copy:
// revision -> deleted.
func leafRevs(t *testing.T, ctx context.Context, db, id string) map[string]bool {
	t.Helper()
	status, body, err := couchtest.Do(ctx, http.MethodGet, couchtest.URL(t),
		"/"+db+"/"+url.PathEscape(id)+"?open_revs=all", nil)
	require.NoError(t, err)
	if status == http.StatusNotFound {
		return map[string]bool{}
	}
	require.Equal(t, http.StatusOK, status, "%s", body)
	var res []struct {
		OK *struct {
			Rev     string `json:"_rev"`
			Deleted bool   `json:"_deleted"`
		} `json:"ok"`
	}
	require.NoError(t, json.Unmarshal(body, &res), "%s", body)
	out := map[string]bool{}
	for _, r := range res {
		if r.OK != nil {
			out[r.OK.Rev] = r.OK.Deleted
		}
	}
	return out
}

func liveRevs(leaves map[string]bool) []string {
	var live []string
	for rev, deleted := range leaves {
		if !deleted {
			live = append(live, rev)
		}
	}
	return live
}

// addRevision adds a revision of a document beside the ones it has, as a
// copy of a cluster that missed a write and took another does; replication
// then brings both to every copy, a conflict.
func addRevision(t *testing.T, ctx context.Context, db string, doc map[string]any) {
	t.Helper()
	body, err := json.Marshal(map[string]any{"new_edits": false, "docs": []any{doc}})
	require.NoError(t, err)
	status, reply, err := couchtest.Do(ctx, http.MethodPost, couchtest.URL(t), "/"+db+"/_bulk_docs", body)
	require.NoError(t, err)
	require.Equal(t, http.StatusCreated, status, "%s", reply)
}

// documentOf reads the document the store wrote for a, as a map.
func documentOf(t *testing.T, ctx context.Context, db string, a *store.Activation) map[string]any {
	t.Helper()
	status, body, err := couchtest.Do(ctx, http.MethodGet, couchtest.URL(t), "/"+db+"/"+url.PathEscape(a.DocID()), nil)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, status, "%s", body)
	var doc map[string]any
	require.NoError(t, json.Unmarshal(body, &doc))
	return doc
}

// Writing one activation again — a retry, a redelivery to another persister,
// a second publication — sends the same bytes, so CouchDB computes the same
// revision: copies that missed the first write take the second without a
// conflict. The clock does not enter the document.
func TestRewriteIsByteIdentical(t *testing.T) {
	ctx := ctxT(t)
	a := activation("idem", "act", 1_700_000_000_000)
	s1, _ := newStore(t)
	s2, _ := newStore(t)
	s3, _ := newStore(t)
	first, err := s1.Store(ctx, a, uc)
	require.NoError(t, err)
	time.Sleep(5 * time.Millisecond) // a later wall clock
	again, err := s2.Store(ctx, a.Clone(), uc)
	require.NoError(t, err)
	res, err := s3.StoreBatch(ctx, []*store.Activation{a.Clone()}, uc)
	require.NoError(t, err)
	require.NoError(t, res[0].Err)
	assert.Equal(t, first.Rev, again.Rev, "Store twice, same revision")
	assert.Equal(t, first.Rev, res[0].DocInfo.Rev, "StoreBatch, same revision as Store")

	// Without an end, the start; an end before the start (a trigger's end
	// is epoch 0) is not taken either.
	for _, end := range []time.Time{{}, time.UnixMilli(0), a.Start.Add(-time.Second)} {
		b := activation("idem", "act", 1_700_000_000_000)
		b.End = end
		s, db := newStore(t)
		_, err := s.Store(ctx, b, uc)
		require.NoError(t, err)
		assert.EqualValues(t, b.Start.UnixMilli(), documentOf(t, ctx, db, b)["updated"], "end %v", end)
	}
	b := activation("idem", "act", 1_700_000_000_000)
	s, db := newStore(t)
	_, err = s.Store(ctx, b, uc)
	require.NoError(t, err)
	assert.EqualValues(t, b.End.UnixMilli(), documentOf(t, ctx, db, b)["updated"])
}

// A deleted activation never comes back: Delete removes every live
// revision, not only the one CouchDB shows.
func TestDeleteRemovesEveryRevision(t *testing.T) {
	ctx := ctxT(t)
	s, db := newStore(t)
	a := activation("delns", "act", 1000)
	info, err := s.Store(ctx, a, uc)
	require.NoError(t, err)
	doc := documentOf(t, ctx, db, a)
	for _, rev := range []string{"1-00000000000000000000000000000001", "1-ffffffffffffffffffffffffffffffff"} {
		doc["_rev"] = rev
		doc["updated"] = 1
		addRevision(t, ctx, db, doc)
	}
	require.Len(t, liveRevs(leafRevs(t, ctx, db, a.DocID())), 3, "three conflicting revisions to start with")

	require.NoError(t, s.Delete(ctx, a.Namespace, a.ActivationID, uc))
	leaves := leafRevs(t, ctx, db, a.DocID())
	assert.Empty(t, liveRevs(leaves), "every revision deleted: %v", leaves)
	assert.Len(t, leaves, 3, "one deletion per revision")
	_, err = s.Get(ctx, a.Namespace, a.ActivationID, uc)
	assert.ErrorIs(t, err, store.ErrNotFound)
	n, err := s.Count(ctx, store.Query{Namespace: "delns"}, uc)
	require.NoError(t, err)
	assert.Zero(t, n)
	assert.ErrorIs(t, s.Delete(ctx, a.Namespace, a.ActivationID, uc), store.ErrNotFound, "deleted twice")
	assert.NotEmpty(t, info.Rev)
}

// accepting turns CouchDB's answers to writes into 202 "accepted" answers,
// as a cluster gives when fewer copies than the write quorum took a
// write; before answering, it lets a test add a revision of the document,
// as a copy that held another one would have.
type accepting struct {
	mu     sync.Mutex
	before func(id string) // called with each written document's id
}

func (a *accepting) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil || resp.StatusCode != http.StatusCreated {
		return resp, err
	}
	isBulk := req.Method == http.MethodPost && strings.HasSuffix(req.URL.Path, "/_bulk_docs")
	isPut := req.Method == http.MethodPut && strings.Count(strings.Trim(req.URL.EscapedPath(), "/"), "/") == 1 &&
		!strings.Contains(req.URL.EscapedPath(), "_design")
	if !isBulk && !isPut {
		return resp, nil
	}
	body, err := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if err != nil {
		return nil, err
	}
	var items []map[string]any
	if isBulk {
		if err := json.Unmarshal(body, &items); err != nil {
			return nil, err
		}
	} else {
		var one map[string]any
		if err := json.Unmarshal(body, &one); err != nil {
			return nil, err
		}
		items = []map[string]any{one}
	}
	a.mu.Lock()
	before := a.before
	a.mu.Unlock()
	for _, it := range items {
		if it["ok"] == true {
			it["accepted"] = true
			if before != nil {
				before(it["id"].(string))
			}
		}
	}
	if isBulk {
		body, err = json.Marshal(items)
	} else {
		body, err = json.Marshal(items[0])
	}
	if err != nil {
		return nil, err
	}
	resp.StatusCode, resp.Status = http.StatusAccepted, "202 Accepted"
	resp.Body = io.NopCloser(bytes.NewReader(body))
	resp.ContentLength = int64(len(body))
	resp.Header.Del("Content-Length")
	return resp, nil
}

// A write answered 202 is checked: one that met another revision of its
// document is a duplicate, reported as store.ErrConflict as a 409 would
// be, and only one revision stays — the one CouchDB shows, so that Get
// answers the same before and after. One that met none succeeds.
func TestAcceptedWriteLeavesNoConflict(t *testing.T) {
	ctx := ctxT(t)
	tr := &accepting{}
	s, db := newStore(t, couchdb.WithHTTPClient(&http.Client{Transport: tr}))

	alone := activation("accns", "act", 1000)
	info, err := s.Store(ctx, alone, uc)
	require.NoError(t, err, "202 without another revision: stored")
	assert.Equal(t, []string{info.Rev}, liveRevs(leafRevs(t, ctx, db, alone.DocID())))

	for _, tc := range []struct {
		name, other string
		oursStays   bool
	}{
		{"ours loses", "1-ffffffffffffffffffffffffffffffff", false},
		{"ours wins", "1-00000000000000000000000000000000", true},
	} {
		for _, batch := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s batch=%v", tc.name, batch), func(t *testing.T) {
				a := activation("accns", "act", 2000)
				other := a.Clone()
				other.Logs = []string{"another record of this activation"}
				otherDoc := map[string]any{
					"_id": a.DocID(), "_rev": tc.other, "entityType": "activation", "updated": 1,
					"namespace": other.Namespace, "name": other.Name, "activationId": other.ActivationID,
					"subject": other.Subject, "start": other.Start.UnixMilli(), "end": other.End.UnixMilli(),
					"response": map[string]any{"statusCode": 0, "result": map[string]any{"ok": true}},
					"logs":     other.Logs, "version": other.Version, "publish": false, "annotations": []any{},
				}
				tr.mu.Lock()
				tr.before = func(id string) {
					if id == a.DocID() {
						addRevision(t, ctx, db, otherDoc)
					}
				}
				tr.mu.Unlock()
				defer func() { tr.mu.Lock(); tr.before = nil; tr.mu.Unlock() }()
				removed := s.ConflictsRemoved()
				var err error
				var rev string
				if batch {
					fresh := activation("accns", "act", 3000)
					res, berr := s.StoreBatch(ctx, []*store.Activation{fresh, a}, uc)
					require.NoError(t, berr)
					require.NoError(t, res[0].Err, "the other record of the batch is stored")
					assert.Len(t, liveRevs(leafRevs(t, ctx, db, fresh.DocID())), 1)
					err = res[1].Err
					rev = res[1].DocInfo.Rev
				} else {
					var info store.DocInfo
					info, err = s.Store(ctx, a, uc)
					rev = info.Rev
				}
				require.ErrorIs(t, err, store.ErrConflict, "a duplicate")
				assert.Contains(t, err.Error(), a.DocID())
				assert.Empty(t, rev)
				live := liveRevs(leafRevs(t, ctx, db, a.DocID()))
				require.Len(t, live, 1, "one revision left")
				assert.Equal(t, tc.oursStays, live[0] != tc.other, "the revision CouchDB shows stays: %v", live)
				assert.Equal(t, removed+1, s.ConflictsRemoved())
				doc := documentOf(t, ctx, db, a)
				assert.NotContains(t, doc, "_conflicts")
				got, err := s.Get(ctx, a.Namespace, a.ActivationID, uc)
				require.NoError(t, err)
				if tc.oursStays {
					assert.Equal(t, a, got)
				} else {
					assert.Equal(t, other.Logs, got.Logs)
				}
			})
		}
	}
}

// Every write carries the write quorum: by default the database's n (1 on a
// single node, 3 on the cluster), none with WriteMajority (CouchDB's own
// default); a quorum above n is refused by New.
func TestWriteQuorumOnTheWire(t *testing.T) {
	ctx := ctxT(t)
	base, db := couchtest.URL(t), couchtest.DBName(t)
	status, body, err := couchtest.Do(ctx, http.MethodPut, base, "/"+db, nil)
	require.NoError(t, err)
	require.Contains(t, []int{http.StatusCreated, http.StatusAccepted}, status, "%s", body)
	_, body, err = couchtest.Do(ctx, http.MethodGet, base, "/"+db, nil)
	require.NoError(t, err)
	var info struct {
		Cluster *struct {
			N int `json:"n"`
		} `json:"cluster"`
	}
	require.NoError(t, json.Unmarshal(body, &info))

	writes := func(s *couchdb.Store, rec *recorder) []string {
		rec.reset()
		a := activation("wns", "act", 1)
		_, err := s.Store(ctx, a, uc)
		require.NoError(t, err)
		_, err = s.StoreBatch(ctx, []*store.Activation{activation("wns", "act", 2)}, uc)
		require.NoError(t, err)
		require.NoError(t, s.Delete(ctx, a.Namespace, a.ActivationID, uc))
		var ws []string
		for _, r := range rec.requests() {
			if r.Method == http.MethodPut || strings.HasSuffix(r.URL.Path, "/_bulk_docs") {
				ws = append(ws, r.Method+" w="+r.URL.Query().Get("w"))
			}
		}
		return ws
	}
	rec := &recorder{}
	s, err := couchdb.New(ctx, base, db, couchdb.WithHTTPClient(rec.client()))
	require.NoError(t, err)
	defer s.Close()
	want := ""
	if info.Cluster != nil {
		want = fmt.Sprint(info.Cluster.N)
	}
	assert.Equal(t, []string{"PUT w=" + want, "POST w=" + want, "POST w=" + want}, writes(s, rec),
		"Store, StoreBatch, Delete wait for every copy")

	rec2 := &recorder{}
	s2, err := couchdb.New(ctx, base, db, couchdb.WithHTTPClient(rec2.client()), couchdb.WithWriteQuorum(couchdb.WriteMajority))
	require.NoError(t, err)
	defer s2.Close()
	assert.Equal(t, []string{"PUT w=", "POST w=", "POST w="}, writes(s2, rec2), "WriteMajority: CouchDB's default")

	_, err = couchdb.New(ctx, base, db, couchdb.WithWriteQuorum(-2))
	assert.ErrorContains(t, err, "WithWriteQuorum")
	if info.Cluster != nil {
		_, err = couchdb.New(ctx, base, db, couchdb.WithWriteQuorum(couchdb.WriteQuorum(info.Cluster.N+1)))
		assert.ErrorContains(t, err, "copies")
		s3, err := couchdb.New(ctx, base, db, couchdb.WithWriteQuorum(couchdb.WriteQuorum(info.Cluster.N)))
		require.NoError(t, err)
		require.NoError(t, s3.Close())
	}
}
