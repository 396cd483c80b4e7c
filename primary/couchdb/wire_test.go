package couchdb_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/go-whisk/activationstore/codec"
	"github.com/go-whisk/activationstore/internal/couchtest"
	"github.com/go-whisk/activationstore/primary/couchdb"
	"github.com/go-whisk/activationstore/store"
)

// recorder is an http.RoundTripper that remembers every request it forwards.
type recorder struct {
	mu   sync.Mutex
	reqs []*http.Request
}

func (r *recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	r.mu.Lock()
	r.reqs = append(r.reqs, req.Clone(context.Background()))
	r.mu.Unlock()
	return http.DefaultTransport.RoundTrip(req)
}

func (r *recorder) client() *http.Client { return &http.Client{Transport: r} }

func (r *recorder) reset() {
	r.mu.Lock()
	r.reqs = nil
	r.mu.Unlock()
}

func (r *recorder) requests() []*http.Request {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*http.Request(nil), r.reqs...)
}

func readJSON(t *testing.T, name string, v any) {
	t.Helper()
	b, err := os.ReadFile("testdata/" + name)
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(b, v), name)
}

type queryExample struct {
	Call  string         `json:"call"`
	HTTP  string         `json:"http"`
	Query map[string]any `json:"query"`
}

// The store sends OpenWhisk's view queries exactly (reference.md §1.4,
// query_examples.json): same design document, same parameters, same keys.
func TestViewQueriesAreOpenWhisks(t *testing.T) {
	var ex struct{ Examples []queryExample }
	readJSON(t, "query_examples.json", &ex)
	// The calls of the first five examples, as store queries.
	queries := []struct {
		call  string
		q     store.Query
		count bool
	}{
		{"listActivationsInNamespace(namespace='guest', skip=0, limit=30, includeDocs=false, since=None, upto=None)",
			store.Query{Namespace: "guest", Limit: 30}, false},
		{"listActivationsInNamespace(namespace='guest', skip=5, limit=10, includeDocs=true, since=Some(1060), upto=Some(1090))",
			store.Query{Namespace: "guest", Skip: 5, Limit: 10, IncludeDocs: true, Since: time.UnixMilli(1060), Upto: time.UnixMilli(1090)}, false},
		{"listActivationsMatchingName(namespace='guest', name='pkg/hello', ...)",
			store.Query{Namespace: "guest", Name: "pkg/hello", Limit: 30}, false},
		{"countActivationsInNamespace(namespace='guest', name=None, skip=4, since=None, upto=None)",
			store.Query{Namespace: "guest", Skip: 4}, true},
		{"countActivationsInNamespace(namespace='guest', name=Some('hello'), ...)",
			store.Query{Namespace: "guest", Name: "hello"}, true},
	}
	rec := &recorder{}
	s, db := newStore(t, couchdb.WithHTTPClient(rec.client()), couchdb.WithStaleUpdateAfter(true))
	ctx := ctxT(t)
	for i, c := range queries {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			e := ex.Examples[i]
			require.Equal(t, c.call, e.Call, "query_examples.json changed")
			rec.reset()
			var err error
			if c.count {
				_, err = s.Count(ctx, c.q, store.UserContext{})
			} else {
				_, err = s.List(ctx, c.q, store.UserContext{})
			}
			require.NoError(t, err)
			reqs := rec.requests()
			require.Len(t, reqs, 1)
			wantPath := strings.Replace(strings.TrimPrefix(e.HTTP, "GET "), "{activationsDb}", db, 1)
			assert.Equal(t, http.MethodGet, reqs[0].Method)
			assert.Equal(t, wantPath, reqs[0].URL.Path)
			assert.Equal(t, e.Query, decodeQuery(t, reqs[0].URL.Query()))
		})
	}
}

// decodeQuery decodes the JSON keys of a query string and keeps the rest as text.
func decodeQuery(t *testing.T, v url.Values) map[string]any {
	out := map[string]any{}
	for k, vs := range v {
		require.Len(t, vs, 1, k)
		if k == "startkey" || k == "endkey" {
			var key any
			dec := json.NewDecoder(strings.NewReader(vs[0]))
			dec.UseNumber()
			require.NoError(t, dec.Decode(&key), k)
			out[k] = normalizeNumbers(key)
			continue
		}
		out[k] = vs[0]
	}
	return out
}

func normalizeNumbers(v any) any {
	switch t := v.(type) {
	case json.Number:
		f, _ := t.Float64()
		return f
	case []any:
		for i := range t {
			t[i] = normalizeNumbers(t[i])
		}
	}
	return v
}

// A document stored through the store is found by OpenWhisk's own queries,
// sent raw, exactly as the store finds it. The data set is OpenWhisk's
// ActivationStoreQueryBehaviors: 10 activations starting at 1000, 1010, …
func TestStoredDocumentsFoundByOpenWhiskQueries(t *testing.T) {
	var ex struct{ Examples []queryExample }
	readJSON(t, "query_examples.json", &ex)
	s, db := newStore(t)
	ctx := ctxT(t)
	var as []*store.Activation
	for i := range 10 {
		a := activation("guest", "hello", int64(1000+10*i))
		a.End = a.Start.Add(time.Second)
		as = append(as, a)
	}
	for i := range 3 { // an action in a package: guest/pkg/hello
		a := activation("guest", "hello", int64(2000+10*i))
		a.Annotations = []store.Annotation{{Key: "path", Value: json.RawMessage(`"guest/pkg/hello"`)}}
		as = append(as, a)
	}
	for i := range 6 { // another action, inside the since/upto window of example 1
		as = append(as, activation("guest", "other", int64(1061+i)))
	}
	as = append(as, activation("guest2", "hello", 1500)) // another namespace
	res, err := s.StoreBatch(ctx, as, store.UserContext{})
	require.NoError(t, err)
	for _, r := range res {
		require.NoError(t, r.Err)
	}

	queries := []store.Query{
		{Namespace: "guest", Limit: 30},
		{Namespace: "guest", Skip: 5, Limit: 10, IncludeDocs: true, Since: time.UnixMilli(1060), Upto: time.UnixMilli(1090)},
		{Namespace: "guest", Name: "pkg/hello", Limit: 30},
		{Namespace: "guest", Skip: 4},
		{Namespace: "guest", Name: "hello"},
	}
	wantCounts := map[int]int{0: 19, 1: 10 - 5, 2: 3, 3: 19 - 4, 4: 10}
	for i, q := range queries {
		count := strings.HasPrefix(ex.Examples[i].Call, "count")
		// The store first: without stale=update_after, it brings the index
		// up to date, so the raw stale=update_after query sees every write.
		var viaStore []string
		if count {
			n, err := s.Count(ctx, q, store.UserContext{})
			require.NoError(t, err)
			assert.Equal(t, wantCounts[i], n, "Count %d", i)
		} else {
			got, err := s.List(ctx, q, store.UserContext{})
			require.NoError(t, err)
			for _, a := range got {
				viaStore = append(viaStore, a.ActivationID)
			}
			assert.Len(t, viaStore, wantCounts[i], "List %d", i)
		}

		path := strings.Replace(strings.TrimPrefix(ex.Examples[i].HTTP, "GET "), "{activationsDb}", db, 1)
		params := url.Values{}
		for k, v := range ex.Examples[i].Query {
			if s, ok := v.(string); ok {
				params.Set(k, s)
				continue
			}
			b, _ := json.Marshal(v)
			params.Set(k, string(b))
		}
		// OpenWhisk's query reads with stale=update_after. On a cluster it
		// may read a copy of a shard whose index the store's query did not
		// bring up to date; that index catches up after the stale read, so
		// the query is repeated for a while.
		deadline := time.Now().Add(20 * time.Second)
		var viaWire []string
		for {
			viaWire = rawQuery(t, ctx, path+"?"+params.Encode(), q, count)
			if count && len(viaWire) == 1 && viaWire[0] == strconv.Itoa(wantCounts[i]) ||
				!count && slices.Equal(viaWire, viaStore) || time.Now().After(deadline) {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if count {
			assert.Equal(t, []string{strconv.Itoa(wantCounts[i])}, viaWire, "raw count %d", i)
			continue
		}
		assert.Equal(t, viaWire, viaStore, "query %d: raw OpenWhisk query and List disagree", i)
	}
}

// rawQuery sends a view query as it is and returns the activation ids of
// its rows, or for a count the count minus q.Skip (floored at 0), as text.
func rawQuery(t *testing.T, ctx context.Context, pathAndQuery string, q store.Query, count bool) []string {
	t.Helper()
	status, body, err := couchtest.Do(ctx, http.MethodGet, couchtest.URL(t), pathAndQuery, nil)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, status, "%s", body)
	var raw struct {
		Rows []struct {
			ID    string          `json:"id"`
			Value json.RawMessage `json:"value"`
			Doc   json.RawMessage `json:"doc"`
		}
	}
	require.NoError(t, json.Unmarshal(body, &raw))
	if count {
		n := 0
		if len(raw.Rows) > 0 {
			require.NoError(t, json.Unmarshal(raw.Rows[0].Value, &n))
		}
		return []string{strconv.Itoa(max(n-q.Skip, 0))}
	}
	var ids []string
	for _, r := range raw.Rows {
		var a *store.Activation
		if q.IncludeDocs {
			doc, err := codec.UnmarshalDocument(r.Doc)
			require.NoError(t, err)
			a = doc.Activation
		} else {
			a, err = codec.UnmarshalSummary(r.Value)
			require.NoError(t, err)
		}
		ids = append(ids, a.ActivationID)
	}
	return ids
}

// canonical re-encodes JSON with sorted keys, for comparisons.
func canonical(t *testing.T, b []byte) string {
	t.Helper()
	var v any
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	require.NoError(t, dec.Decode(&v))
	out, err := json.Marshal(v)
	require.NoError(t, err)
	return string(out)
}

// The stored document is OpenWhisk's document form, and the views emit for
// it the rows OpenWhisk's map functions emit.
func TestDocumentFormAndViewRows(t *testing.T) {
	for _, tc := range []struct{ doc, rows string }{
		{"wa_document_couchdb.json", "view_rows_for_wa_document_couchdb.json"},
		{"wa_trigger_end_epoch.json", "view_rows_for_trigger.json"},
	} {
		t.Run(tc.doc, func(t *testing.T) {
			vector, err := os.ReadFile("testdata/" + tc.doc)
			require.NoError(t, err)
			doc, err := codec.UnmarshalDocument(vector)
			require.NoError(t, err)
			s, db := newStore(t)
			ctx := ctxT(t)
			info, err := s.Store(ctx, doc.Activation, store.UserContext{})
			require.NoError(t, err)
			require.Equal(t, doc.Activation.DocID(), info.ID)
			require.NotEmpty(t, info.Rev)

			// The raw document, as Scala OpenWhisk would read it.
			status, body, err := couchtest.Do(ctx, http.MethodGet, couchtest.URL(t), "/"+db+"/"+url.PathEscape(info.ID), nil)
			require.NoError(t, err)
			require.Equal(t, http.StatusOK, status)
			var got map[string]json.RawMessage
			require.NoError(t, json.Unmarshal(body, &got))
			assert.Equal(t, `"`+info.Rev+`"`, string(got["_rev"]))
			delete(got, "_rev")
			var want map[string]json.RawMessage
			require.NoError(t, json.Unmarshal(vector, &want))
			if _, ok := want["_id"]; !ok { // a plain activation vector
				want["_id"] = json.RawMessage(`"` + info.ID + `"`)
				want["entityType"] = json.RawMessage(`"activation"`)
			}
			// "updated" comes from the record, not the clock: the end, or
			// the start of an activation without a later end.
			updated := doc.Activation.End
			if !updated.After(doc.Activation.Start) {
				updated = doc.Activation.Start
			}
			want["updated"] = json.RawMessage(strconv.FormatInt(updated.UnixMilli(), 10))
			gotB, _ := json.Marshal(got)
			wantB, _ := json.Marshal(want)
			assert.Equal(t, canonical(t, wantB), canonical(t, gotB))

			// The view rows.
			var rows map[string]json.RawMessage
			readJSON(t, tc.rows, &rows)
			for _, view := range []string{"whisks.v2.1.0/activations", "whisks-filters.v2.1.1/activations"} {
				var wantRow struct {
					ID    string          `json:"id"`
					Key   json.RawMessage `json:"key"`
					Value json.RawMessage `json:"value"`
				}
				require.NoError(t, json.Unmarshal(rows[view], &wantRow))
				ddoc, name, _ := strings.Cut(view, "/")
				p := fmt.Sprintf("/%s/_design/%s/_view/%s?reduce=false&key=%s", db, ddoc, name, url.QueryEscape(string(wantRow.Key)))
				status, body, err := couchtest.Do(ctx, http.MethodGet, couchtest.URL(t), p, nil)
				require.NoError(t, err)
				require.Equal(t, http.StatusOK, status, "%s", body)
				var res struct {
					Rows []struct {
						ID    string          `json:"id"`
						Value json.RawMessage `json:"value"`
					}
				}
				require.NoError(t, json.Unmarshal(body, &res))
				require.Len(t, res.Rows, 1, view)
				assert.Equal(t, wantRow.ID, res.Rows[0].ID, view)
				assert.Equal(t, canonical(t, wantRow.Value), canonical(t, res.Rows[0].Value), view)
			}

			// And List reads the summary back as the codec does.
			got2, err := s.List(ctx, store.Query{Namespace: doc.Activation.Namespace}, store.UserContext{})
			require.NoError(t, err)
			require.Len(t, got2, 1)
			assert.Equal(t, doc.Activation.Summary(), got2[0])
		})
	}
}

// Every design document New installs is there, verbatim.
func TestDesignDocumentsInstalledVerbatim(t *testing.T) {
	_, db := newStore(t)
	ctx := ctxT(t)
	files := map[string]string{
		"_design/whisks.v2.1.0":         "whisks_design_document_for_activations_db_v2.1.0.json",
		"_design/whisks-filters.v2.1.1": "whisks_design_document_for_activations_db_filters_v2.1.1.json",
		"_design/activations":           "activations_design_document_for_activations_db.json",
		"_design/logCleanup":            "logCleanup_design_document_for_activations_db.json",
	}
	ids := couchdb.DesignDocs()
	sort.Strings(ids)
	var want []string
	for id := range files {
		want = append(want, id)
	}
	sort.Strings(want)
	require.Equal(t, want, ids)
	for id, file := range files {
		b, err := os.ReadFile("ddocs/" + file)
		require.NoError(t, err)
		status, body, err := couchtest.Do(ctx, http.MethodGet, couchtest.URL(t), "/"+db+"/"+id, nil)
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, status, id)
		var got map[string]json.RawMessage
		require.NoError(t, json.Unmarshal(body, &got))
		delete(got, "_rev")
		gotB, _ := json.Marshal(got)
		assert.Equal(t, canonical(t, b), canonical(t, gotB), id)
	}
}
