package couchdb_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/go-whisk/activationstore/codec"
	"github.com/go-whisk/activationstore/internal/couchtest"
	"github.com/go-whisk/activationstore/primary/couchdb"
	"github.com/go-whisk/activationstore/primary/memory"
	"github.com/go-whisk/activationstore/store"
)

// Sizes of the differential test.
const (
	diffSeed    = 20240611
	diffRecords = 2400
	diffQueries = 600
)

// TestDifferentialMemoryAgainstCouchDB stores one seeded random corpus in
// the memory primary and in CouchDB, then checks that random queries give
// the same List (ids, order and content) and the same Count from both. The
// server runs OpenWhisk's own view JavaScript, so this pins the memory
// primary to the real views, for both versions of the filters view. It runs
// against the test server, and also against COUCHDB_URL when that is set.
func TestDifferentialMemoryAgainstCouchDB(t *testing.T) {
	records, queries := diffRecords, diffQueries
	if testing.Short() { // the same checks on a smaller corpus
		records, queries = diffRecords/4, diffQueries/4
	}
	servers := map[string]string{}
	if env := os.Getenv(couchtest.EnvURL); env != "" {
		servers["COUCHDB_URL"] = couchtest.URL(t)
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		srv, err := couchtest.Start(ctx)
		cancel()
		require.NoError(t, err, "the CouchDB test server")
		t.Cleanup(srv.Close)
		servers["testserver"] = srv.URL()
	} else {
		servers["testserver"] = couchtest.URL(t)
	}
	corpus := diffCorpus(rand.New(rand.NewPCG(diffSeed, 1)), records)
	for name, base := range servers {
		for _, v := range filterViews {
			t.Run(name+"/"+string(v), func(t *testing.T) {
				runDifferential(t, base, v, corpus, rand.New(rand.NewPCG(diffSeed, 2)), queries)
			})
		}
	}
}

func runDifferential(t *testing.T, base string, v store.FilterView, corpus []*store.Activation, rng *rand.Rand, queries int) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	db := couchtest.DBName(t)
	couch, err := couchdb.New(ctx, base, db, couchdb.WithFilterView(v))
	require.NoError(t, err)
	defer couch.Close()
	mem := memory.New(memory.WithFilterView(v))
	for _, s := range []store.BatchStorer{couch, mem} {
		res, err := s.StoreBatch(ctx, corpus, uc)
		require.NoError(t, err)
		for i, r := range res {
			require.NoError(t, r.Err, "record %d", i)
		}
	}

	qs := diffQueriesFor(rng, corpus, v, queries)
	nonEmpty, ties := 0, 0
	for i, q := range qs {
		wantList, err := couch.List(ctx, q, uc)
		require.NoError(t, err, "query %d %+v", i, q)
		gotList, err := mem.List(ctx, q, uc)
		require.NoError(t, err, "query %d %+v", i, q)
		require.Equal(t, ids(wantList), ids(gotList), "query %d (seed %d): List %s", i, diffSeed, queryText(q))
		for j := range wantList {
			require.Equal(t, canonicalActivation(t, wantList[j], q.IncludeDocs), canonicalActivation(t, gotList[j], q.IncludeDocs),
				"query %d: record %d (%s)", i, j, wantList[j].ActivationID)
		}
		wantN, err := couch.Count(ctx, q, uc)
		require.NoError(t, err)
		gotN, err := mem.Count(ctx, q, uc)
		require.NoError(t, err)
		require.Equal(t, wantN, gotN, "query %d (seed %d): Count %s", i, diffSeed, queryText(q))
		if len(wantList) > 0 {
			nonEmpty++
		}
		for j := 1; j < len(wantList); j++ {
			if wantList[j].Start.Equal(wantList[j-1].Start) {
				ties++
				break
			}
		}
	}
	// The corpus and the queries are meant to exercise the interesting
	// cases; a change that made them trivial would make this test blind.
	require.Greater(t, nonEmpty, len(qs)/2, "queries with results")
	require.Greater(t, ties, len(qs)/10, "lists holding records with equal starts")
	t.Logf("%d queries, %d with results, %d lists with equal starts", len(qs), nonEmpty, ties)
}

func ids(as []*store.Activation) []string {
	out := make([]string, len(as))
	for i, a := range as {
		out[i] = a.ActivationID
	}
	return out
}

// canonicalActivation is a record in a form where equal records compare
// equal: its JSON (times as epoch milliseconds), numbers parsed.
func canonicalActivation(t *testing.T, a *store.Activation, docs bool) any {
	t.Helper()
	var b []byte
	var err error
	if docs {
		b, err = codec.MarshalActivation(a)
	} else {
		b, err = codec.MarshalSummary(a)
	}
	require.NoError(t, err)
	var v any
	require.NoError(t, json.Unmarshal(b, &v))
	return v
}

func queryText(q store.Query) string {
	ms := func(t time.Time) string {
		if t.IsZero() {
			return "-"
		}
		return fmt.Sprint(t.UnixMilli())
	}
	return fmt.Sprintf("{ns %q name %q since %s upto %s skip %d limit %d docs %v}", q.Namespace, q.Name, ms(q.Since), ms(q.Upto), q.Skip, q.Limit, q.IncludeDocs)
}

// The corpus's building blocks. Namespaces include packages, and one whose
// filter keys meet another's ("dns" with pkg/act, "dns/pkg" with act).
var (
	diffNamespaces = []string{"dns", "dns/pkg", "dns/_sub", "other", "Dns", "dns0"}
	diffNames      = []string{"act", "_util", "_", "_ _", "a b", "pkg", "act2"}
	// Starts cluster around anchors so that many are equal: before 1970,
	// around epoch 0, and recent.
	diffAnchors = []int64{-31_536_000_000, -1_000, 0, 1_000, 1_700_000_000_000}
)

func diffCorpus(rng *rand.Rand, n int) []*store.Activation {
	pick := func(s []string) string { return s[rng.IntN(len(s))] }
	seen := map[string]bool{}
	out := make([]*store.Activation, 0, n)
	for len(out) < n {
		ns, name := pick(diffNamespaces), pick(diffNames)
		id := fmt.Sprintf("%016x%016x", rng.Uint64(), rng.Uint64())
		if seen[id] {
			continue
		}
		seen[id] = true
		startMs := diffAnchors[rng.IntN(len(diffAnchors))] + int64(rng.IntN(12)) - 3
		start := time.UnixMilli(startMs).UTC()
		switch rng.IntN(10) {
		case 0:
			start = time.Time{} // year 1: written as -62135596800000
		case 1:
			start = time.UnixMilli(0)
		}
		a := &store.Activation{
			Namespace: ns, Name: name, Subject: "diff-subject", ActivationID: id, Start: start, End: store.NoEnd,
			Response: store.Response{StatusCode: rng.IntN(4), Result: json.RawMessage(fmt.Sprintf(`{"n":%d}`, len(out)))},
			Logs:     []string{"line " + id}, Version: store.DefaultVersion, Publish: rng.IntN(2) == 0,
		}
		if rng.IntN(8) != 0 { // else a trigger: end 0, no duration
			d := int64(rng.IntN(5000))
			a.End = start.Add(time.Duration(d) * time.Millisecond)
			a.Duration = &d
		}
		if rng.IntN(10) == 0 {
			a.Cause = fmt.Sprintf("%032x", rng.Uint64())
		}
		a.Annotations = diffAnnotations(rng, ns, name)
		out = append(out, a)
	}
	return out
}

// diffAnnotations returns path and binding annotations of every shape the
// views tell apart, sometimes repeated.
func diffAnnotations(rng *rand.Rand, ns, name string) []store.Annotation {
	paths := []string{
		"", // absent
		`"` + ns + `/` + name + `"`,
		`"` + ns + `/pkg/` + name + `"`,
		`"` + ns + `/_pkg/` + name + `"`,
		`"whisk.system/utils/` + name + `"`,
		`null`, `3`, `"a/b/c/d"`,
	}
	bindings := []string{
		"", "", "", // absent, most often
		`null`, `""`, `"` + ns + `/bnd"`, `"` + ns + `/_bnd"`, `"` + ns + `"`, `0`, `7`,
	}
	var out []store.Annotation
	add := func(k, v string) {
		if v != "" {
			out = append(out, store.Annotation{Key: k, Value: json.RawMessage(v)})
		}
	}
	add("kind", `"nodejs:20"`)
	if rng.IntN(2) == 0 {
		add("binding", bindings[rng.IntN(len(bindings))])
		add("path", paths[rng.IntN(len(paths))])
	} else {
		add("path", paths[rng.IntN(len(paths))])
		add("binding", bindings[rng.IntN(len(bindings))])
	}
	if rng.IntN(12) == 0 { // repeated: v2.1.0 reads the first path, v2.1.1 the last
		add("path", paths[rng.IntN(len(paths))])
	}
	if rng.IntN(12) == 0 {
		add("binding", bindings[rng.IntN(len(bindings))])
	}
	return out
}

// diffQueriesFor returns n random queries: mostly names and bounds that
// occur in the corpus, at and around their boundaries.
func diffQueriesFor(rng *rand.Rand, corpus []*store.Activation, v store.FilterView, n int) []store.Query {
	names := map[string][]string{} // namespace → filter keys present
	starts := map[string][]int64{} // namespace, and namespace/key → starts present
	for _, a := range corpus {
		k := v.PathFilter(a)
		if store.ValidateName(k) == nil && !slices.Contains(names[a.Namespace], k) {
			names[a.Namespace] = append(names[a.Namespace], k)
		}
		ms := a.Start.UnixMilli() // the zero time.Time is year 1
		starts[a.Namespace] = append(starts[a.Namespace], ms)
		starts[a.Namespace+"/"+k] = append(starts[a.Namespace+"/"+k], ms)
	}
	for ns := range names {
		slices.Sort(names[ns])
	}
	instant := func(near []int64) time.Time {
		switch r := rng.IntN(10); {
		case r == 0 || len(near) == 0:
			return time.UnixMilli(0)
		case r == 1:
			return time.UnixMilli(diffAnchors[rng.IntN(len(diffAnchors))] - 5000)
		default: // at, just before or just after a start the query may select
			return time.UnixMilli(near[rng.IntN(len(near))] + int64(rng.IntN(3)) - 1)
		}
	}
	out := make([]store.Query, 0, n)
	for len(out) < n {
		q := store.Query{Namespace: diffNamespaces[rng.IntN(len(diffNamespaces))]}
		if rng.IntN(20) == 0 {
			q.Namespace = "absent"
		}
		switch r := rng.IntN(10); {
		case r < 4: // the whole namespace
		case r < 9:
			if ks := names[q.Namespace]; len(ks) > 0 {
				q.Name = ks[rng.IntN(len(ks))]
			}
		default:
			q.Name = []string{"act", "pkg/act", "bnd/_util", "undefined/act", "_pkg/a b", "nope"}[rng.IntN(6)]
		}
		near := starts[q.Namespace]
		if q.Name != "" {
			near = starts[q.Namespace+"/"+q.Name]
		}
		if rng.IntN(2) == 0 {
			q.Since = instant(near)
		}
		if rng.IntN(2) == 0 {
			q.Upto = instant(near)
		}
		if q.Since.IsZero() && !q.Upto.IsZero() && q.Upto.UnixMilli() < 0 && rng.IntN(4) != 0 {
			// a zero Since is epoch 0, which would leave the window empty:
			// mostly reach back to the records of year 1 (the zero time.Time)
			q.Since = time.UnixMilli(-62135596800000 - 1)
		}
		if !q.Since.IsZero() && q.Upto.Before(q.Since) && rng.IntN(5) != 0 {
			q.Since, q.Upto = q.Upto, q.Since // mostly a window; sometimes inverted, which is empty
		}
		switch r := rng.IntN(25); {
		case r < 13:
		case r < 20:
			q.Skip = rng.IntN(8)
		case r < 24:
			q.Skip = rng.IntN(40)
		default:
			q.Skip = math.MaxInt >> 3
		}
		switch r := rng.IntN(10); {
		case r < 3: // 0: no limit
		case r < 9:
			q.Limit = 1 + rng.IntN(30)
		default:
			q.Limit = math.MaxInt >> 3
		}
		q.IncludeDocs = rng.IntN(3) == 0
		out = append(out, q)
	}
	return out
}
