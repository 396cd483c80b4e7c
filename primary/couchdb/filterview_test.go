package couchdb_test

import (
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"os"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/go-whisk/activationstore/internal/couchtest"
	"github.com/go-whisk/activationstore/primary/couchdb"
	"github.com/go-whisk/activationstore/primary/memory"
	"github.com/go-whisk/activationstore/store"
)

var filterViews = []store.FilterView{store.FilterViewV210, store.FilterViewV211}

// ddocFile maps a filters view to its file in ddocs/.
func ddocFile(v store.FilterView) string {
	return map[store.FilterView]string{
		store.FilterViewV210: "whisks_design_document_for_activations_db_filters_v2.1.0.json",
		store.FilterViewV211: "whisks_design_document_for_activations_db_filters_v2.1.1.json",
	}[v]
}

// installDDoc puts the embedded design document of v into db, as an older
// deployment's set-up would have.
func installDDoc(t *testing.T, base, db string, v store.FilterView) {
	t.Helper()
	b, err := os.ReadFile("ddocs/" + ddocFile(v))
	require.NoError(t, err)
	status, body, err := couchtest.Do(ctxT(t), http.MethodPut, base, "/"+db+"/_design/"+string(v), b)
	require.NoError(t, err)
	require.Equal(t, http.StatusCreated, status, "%s", body)
}

func ddocExists(t *testing.T, base, db string, v store.FilterView) bool {
	t.Helper()
	status, body, err := couchtest.Do(ctxT(t), http.MethodGet, base, "/"+db+"/_design/"+string(v), nil)
	require.NoError(t, err)
	require.Contains(t, []int{http.StatusOK, http.StatusNotFound}, status, "%s", body)
	return status == http.StatusOK
}

// bound returns an activation invoked through a binding: path says
// ns/pkg/act, binding says ns/bnd.
func bound(ns string, startMs int64) *store.Activation {
	a := activation(ns, "act", startMs)
	a.Annotations = []store.Annotation{
		{Key: "path", Value: json.RawMessage(`"whisk.system/pkg/act"`)},
		{Key: "binding", Value: json.RawMessage(`"` + ns + `/bnd"`)},
	}
	return a
}

// TestFilterViewDetection: New queries the filters view the database holds
// (v2.1.1 before v2.1.0), installs v2.1.1 in a new database, never adds a
// second filters view unasked, and WithFilterView overrides the choice.
func TestFilterViewDetection(t *testing.T) {
	base := couchtest.URL(t)
	for _, c := range []struct {
		name      string
		existing  []store.FilterView
		opt       store.FilterView
		want      store.FilterView
		installed []store.FilterView
	}{
		{"new database", nil, "", store.FilterViewV211, []store.FilterView{store.FilterViewV211}},
		{"not migrated", []store.FilterView{store.FilterViewV210}, "", store.FilterViewV210, []store.FilterView{store.FilterViewV210}},
		{"migrated", []store.FilterView{store.FilterViewV210, store.FilterViewV211}, "", store.FilterViewV211, filterViews},
		{"only v2.1.1", []store.FilterView{store.FilterViewV211}, "", store.FilterViewV211, []store.FilterView{store.FilterViewV211}},
		{"asked v2.1.0 in a new database", nil, store.FilterViewV210, store.FilterViewV210, []store.FilterView{store.FilterViewV210}},
		{"asked v2.1.1 where v2.1.0 is", []store.FilterView{store.FilterViewV210}, store.FilterViewV211, store.FilterViewV211, filterViews},
	} {
		t.Run(c.name, func(t *testing.T) {
			db := couchtest.DBName(t)
			require.NoError(t, couchtest.CreateDB(ctxT(t), base, db))
			for _, v := range c.existing {
				installDDoc(t, base, db, v)
			}
			var opts []couchdb.Option
			if c.opt != "" {
				opts = append(opts, couchdb.WithFilterView(c.opt))
			}
			s, err := couchdb.New(ctxT(t), base, db, opts...)
			require.NoError(t, err)
			t.Cleanup(func() { _ = s.Close() })
			assert.Equal(t, c.want, s.FilterView())
			for _, v := range filterViews {
				assert.Equal(t, slices.Contains(c.installed, v), ddocExists(t, base, db, v), "design document %s", v)
			}

			// The choice shows in which name lists an activation made through a binding.
			a := bound("guest", 1000)
			_, err = s.Store(ctxT(t), a, uc)
			require.NoError(t, err)
			byBinding, err := s.List(ctxT(t), store.Query{Namespace: "guest", Name: "bnd/act"}, uc)
			require.NoError(t, err)
			byPath, err := s.Count(ctxT(t), store.Query{Namespace: "guest", Name: "pkg/act"}, uc)
			require.NoError(t, err)
			if c.want == store.FilterViewV211 {
				assert.Len(t, byBinding, 1)
				assert.Equal(t, 0, byPath)
			} else {
				assert.Empty(t, byBinding)
				assert.Equal(t, 1, byPath)
			}
		})
	}
}

func TestFilterViewOptionRefusesUnknown(t *testing.T) {
	_, err := couchdb.New(ctxT(t), couchtest.URL(t), couchtest.DBName(t), couchdb.WithFilterView("whisks-filters.v9"))
	require.Error(t, err)
	assert.ErrorContains(t, err, "WithFilterView")
	assert.Panics(t, func() { memory.New(memory.WithFilterView("whisks-filters.v9")) })
	assert.Equal(t, store.FilterViewV211, memory.New().FilterView(), "the memory primary's default")
}

// The store queries the view it chose, by name.
func TestFilterViewQueried(t *testing.T) {
	for _, v := range filterViews {
		rec := &recorder{}
		s, db := newStore(t, couchdb.WithHTTPClient(rec.client()), couchdb.WithFilterView(v))
		rec.reset()
		_, err := s.List(ctxT(t), store.Query{Namespace: "guest", Name: "pkg/act"}, uc)
		require.NoError(t, err)
		_, err = s.Count(ctxT(t), store.Query{Namespace: "guest", Name: "act"}, uc)
		require.NoError(t, err)
		reqs := rec.requests()
		require.Len(t, reqs, 2)
		for _, r := range reqs {
			assert.Equal(t, "/"+db+"/_design/"+string(v)+"/_view/activations", r.URL.Path)
		}
	}
}

// annotationShapes are values of the path and binding annotations the
// views' JavaScript treats differently: strings of 0 to 4 segments, falsy
// values, and values without split.
var (
	pathShapes = []string{"", `null`, `""`, `"ns/act"`, `"ns/pkg/act"`, `"ns/_pkg/act"`, `"ns//act"`, `"a/b/c/d"`,
		`3`, `true`, `{}`, `[]`, `"ns/pkg/"`}
	bindingShapes = []string{"", `null`, `""`, `"ns"`, `"ns/bnd"`, `"ns/_bnd"`, `"ns/bnd/x"`, `"/bnd"`, `"0"`,
		`0`, `-0`, `0.0`, `0e3`, `1`, `-2.5`, `true`, `false`, `{}`, `[]`, `["ns/bnd"]`, `{"split":1}`}
)

// shapeCorpus returns an activation for every pair of path and binding
// shape ("" leaves the annotation out), and some with repeated annotations.
func shapeCorpus(ns string) []*store.Activation {
	var out []*store.Activation
	start := int64(1000)
	add := func(name string, kv ...string) {
		a := activation(ns, name, start)
		start++
		a.Annotations = []store.Annotation{{Key: "kind", Value: json.RawMessage(`"nodejs:20"`)}}
		for i := 0; i < len(kv); i += 2 {
			if kv[i+1] != "" {
				a.Annotations = append(a.Annotations, store.Annotation{Key: kv[i], Value: json.RawMessage(kv[i+1])})
			}
		}
		out = append(out, a)
	}
	for _, p := range pathShapes {
		for _, b := range bindingShapes {
			add("act", "path", p, "binding", b)
			add("_util", "binding", b, "path", p) // the other order
		}
	}
	add("act", "path", `"ns/p1/act"`, "path", `"ns/p2/act"`)
	add("act", "path", `null`, "path", `"ns/p2/act"`)
	add("act", "path", `"ns/p1/act"`, "path", `null`)
	add("act", "binding", `"ns/b1"`, "binding", `null`, "path", `"ns/pkg/act"`)
	add("act", "binding", `null`, "binding", `"ns/b2"`)
	add("act", "binding", `"ns/b1"`, "binding", `7`, "path", `"ns/pkg/act"`)
	add("act", "Path", `"ns/pkg/act"`, "binding ", `"ns/bnd"`)
	return out
}

// TestPathFilterMatchesViewJavaScript pins store.FilterView.PathFilter, the
// memory primary's emulation of the filters views, to OpenWhisk's view
// JavaScript as the server runs it: for every annotation shape, the key the
// view emits is namespace/PathFilter.
func TestPathFilterMatchesViewJavaScript(t *testing.T) {
	for _, v := range filterViews {
		t.Run(string(v), func(t *testing.T) {
			s, db := newStore(t, couchdb.WithFilterView(v))
			ctx := ctxT(t)
			corpus := shapeCorpus("guest")
			res, err := s.StoreBatch(ctx, corpus, uc)
			require.NoError(t, err)
			for i, r := range res {
				require.NoError(t, r.Err, "document %d", i)
			}
			status, body, err := couchtest.Do(ctx, http.MethodGet, couchtest.URL(t),
				"/"+db+"/_design/"+string(v)+"/_view/activations?reduce=false", nil)
			require.NoError(t, err)
			require.Equal(t, http.StatusOK, status, "%s", body)
			var rows struct {
				Rows []struct {
					ID  string `json:"id"`
					Key []any  `json:"key"`
				} `json:"rows"`
			}
			require.NoError(t, json.Unmarshal(body, &rows))
			require.Len(t, rows.Rows, len(corpus), "the view emits every activation once")
			keys := map[string]string{}
			for _, r := range rows.Rows {
				keys[r.ID], _ = r.Key[0].(string)
			}
			mem := memory.New(memory.WithFilterView(v))
			for _, a := range corpus {
				want := keys[a.DocID()]
				got := "guest/" + v.PathFilter(a)
				assert.Equal(t, want, got, "annotations %s", annotationsText(a))
				if name := strings.TrimPrefix(want, "guest/"); store.ValidateName(name) == nil {
					_, err := mem.Store(ctx, a, uc)
					require.NoError(t, err)
					n, err := mem.Count(ctx, store.Query{Namespace: "guest", Name: name, Since: a.Start, Upto: a.Start}, uc)
					require.NoError(t, err)
					assert.Equal(t, 1, n, "memory lists %s under %q", annotationsText(a), name)
				}
			}
		})
	}
}

func annotationsText(a *store.Activation) string {
	var b strings.Builder
	for _, an := range a.Annotations {
		fmt.Fprintf(&b, "%s=%s ", an.Key, an.Value)
	}
	return b.String()
}

// TestLimitNeverSizesAllocation: List used to preallocate Limit entries, so
// a limit of 2e8 cost 1.6 GB for an empty result and 1<<60 panicked. Now
// any limit is valid and costs nothing up front; the limit sent to CouchDB
// is bounded, and so is the skip.
func TestLimitNeverSizesAllocation(t *testing.T) {
	rec := &recorder{}
	s, _ := newStore(t, couchdb.WithHTTPClient(rec.client()))
	ctx := ctxT(t)
	a := activation("alloc", "act", 1000)
	_, err := s.Store(ctx, a, uc)
	require.NoError(t, err)
	_, err = s.List(ctx, store.Query{Namespace: "alloc"}, uc) // build the index outside the measure
	require.NoError(t, err)

	for _, limit := range []int{2e8, math.MaxInt >> 3, couchdb.MaxViewLimit + 1} {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		got, err := s.List(ctx, store.Query{Namespace: "alloc", Limit: limit}, uc)
		runtime.ReadMemStats(&after)
		require.NoError(t, err, "limit %d", limit)
		require.Len(t, got, 1)
		assert.Less(t, after.TotalAlloc-before.TotalAlloc, uint64(16<<20), "bytes allocated by List with limit %d", limit)
	}

	rec.reset()
	for _, q := range []store.Query{
		{Namespace: "alloc", Limit: couchdb.MaxViewLimit},
		{Namespace: "alloc", Limit: couchdb.MaxViewLimit + 1, Skip: math.MaxInt},
	} {
		_, err := s.List(ctx, q, uc)
		require.NoError(t, err)
	}
	reqs := rec.requests()
	require.Len(t, reqs, 2)
	assert.Equal(t, fmt.Sprint(couchdb.MaxViewLimit), reqs[0].URL.Query().Get("limit"))
	assert.False(t, reqs[1].URL.Query().Has("limit"), "a limit above MaxViewLimit is no limit")
	assert.Equal(t, fmt.Sprint(min(int64(math.MaxInt), 1<<53-1)), reqs[1].URL.Query().Get("skip"), "the skip stays an exact JSON number")
}

// TestEmptyRangeNotSent: CouchDB refuses a key range whose end comes before
// its start; List and Count answer such a query with nothing, as the
// memory primary does, without sending it.
func TestEmptyRangeNotSent(t *testing.T) {
	rec := &recorder{}
	s, db := newStore(t, couchdb.WithHTTPClient(rec.client()))
	ctx := ctxT(t)
	_, err := s.Store(ctx, activation("empty", "act", -5), uc)
	require.NoError(t, err)

	// The server's own answer to the raw query OpenWhisk would send.
	start, end := `["empty",0]`, `["empty",-1,"\ufff0"]`
	status, body, err := couchtest.Do(ctx, http.MethodGet, couchtest.URL(t),
		"/"+db+"/_design/whisks.v2.1.0/_view/activations?reduce=true&startkey="+url.QueryEscape(start)+"&endkey="+url.QueryEscape(end), nil)
	require.NoError(t, err)
	assert.Equal(t, http.StatusBadRequest, status, "the server refuses an inverted range: %s", body)

	rec.reset()
	for _, q := range []store.Query{
		{Namespace: "empty", Upto: time.UnixMilli(-1)},
		{Namespace: "empty", Name: "act", Since: time.UnixMilli(10), Upto: time.UnixMilli(9)},
	} {
		got, err := s.List(ctx, q, uc)
		require.NoError(t, err)
		assert.Empty(t, got)
		n, err := s.Count(ctx, q, uc)
		require.NoError(t, err)
		assert.Equal(t, 0, n)
	}
	assert.Empty(t, rec.requests(), "nothing is sent for an empty range")
	got, err := s.List(ctx, store.Query{Namespace: "empty", Since: time.UnixMilli(-5), Upto: time.UnixMilli(-5)}, uc)
	require.NoError(t, err)
	assert.Len(t, got, 1, "a range before 1970 that Since opens is not empty")
}
