package elasticsearch_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/go-whisk/activationstore/codec"
	"github.com/go-whisk/activationstore/internal/searchtest"
	"github.com/go-whisk/activationstore/primary/elasticsearch"
	"github.com/go-whisk/activationstore/primary/memory"
	"github.com/go-whisk/activationstore/store"
)

// Sizes of the differential test.
const (
	diffSeed    = 20261203
	diffRecords = 2400
	diffQueries = 600
)

var uc = store.UserContext{}

// TestDifferentialMemoryAgainstServer stores one seeded random corpus in
// the memory primary (answering with the Elasticsearch name filter) and in
// the server, then checks that random queries give the same List (ids,
// order and content), the same Count and the same DurationStats from
// both. It runs twice: on indices made by this package's template, and on
// indices the server makes by dynamic mapping, as OpenWhisk's are.
func TestDifferentialMemoryAgainstServer(t *testing.T) {
	records, queries := diffRecords, diffQueries
	if testing.Short() {
		// Fewer queries over the same corpus: a quarter of it left most
		// of the generated queries without results, which the test
		// refuses (a query that matches nothing compares nothing).
		queries = diffQueries / 4
	}
	srv := searchtest.Start(t)
	corpus := diffCorpus(rand.New(rand.NewPCG(diffSeed, 1)), records)
	t.Run("template", func(t *testing.T) {
		runDifferential(t, newStore(t, srv, elasticsearch.WithTimeout(3*time.Minute)), srv, corpus, rand.New(rand.NewPCG(diffSeed, 2)), queries, false)
	})
	t.Run("dynamic-mapping", func(t *testing.T) {
		// Dynamic mapping gives each annotation key the type of its first
		// value: OpenWhisk writes path and binding as strings only.
		stringly := make([]*store.Activation, 0, len(corpus))
		for _, a := range corpus {
			c := a.Clone()
			c.Annotations = slices.DeleteFunc(c.Annotations, func(an store.Annotation) bool {
				return (an.Key == "path" || an.Key == "binding") && !strings.HasPrefix(string(an.Value), `"`)
			})
			stringly = append(stringly, c)
		}
		runDifferential(t, newStore(t, srv, elasticsearch.WithIndexTemplate(false), elasticsearch.WithTimeout(3*time.Minute)), srv, stringly, rand.New(rand.NewPCG(diffSeed, 3)), queries, true)
	})
}

func runDifferential(t *testing.T, es *elasticsearch.Store, srv *searchtest.Server, corpus []*store.Activation, rng *rand.Rand, queries int, dynamic bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	mem := memory.New(memory.WithFilterView(store.FilterViewElasticSearch))
	for _, s := range []store.BatchStorer{es, mem} {
		res, err := s.StoreBatch(ctx, corpus, uc)
		require.NoError(t, err)
		for i, r := range res {
			require.NoError(t, r.Err, "record %d", i)
		}
	}

	qs := diffQueriesFor(rng, corpus, queries)
	nonEmpty, ties := 0, 0
	for i, q := range qs {
		wantList, err := es.List(ctx, q, uc)
		require.NoError(t, err, "query %d %+v", i, q)
		gotList, err := mem.List(ctx, q, uc)
		require.NoError(t, err, "query %d %+v", i, q)
		require.Equal(t, ids(wantList), ids(gotList), "query %d (seed %d): List %s", i, diffSeed, queryText(q))
		for j := range wantList {
			require.Equal(t, canonicalActivation(t, wantList[j], q.IncludeDocs), canonicalActivation(t, gotList[j], q.IncludeDocs),
				"query %d: record %d (%s)", i, j, wantList[j].ActivationID)
		}
		wantN, err := es.Count(ctx, q, uc)
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
	// A floor under what the comparison covers: the generator's queries
	// find something about half the time (53-54 % of the full 600; 50 %
	// of the first 150 under -short).
	require.GreaterOrEqual(t, nonEmpty, len(qs)*2/5, "queries with results")
	require.Greater(t, ties, len(qs)/10, "lists holding records with equal starts")

	// Duration statistics: every action path of the corpus, with windows.
	durations := 0
	for _, a := range corpus[:200] {
		dq := store.DurationQuery{Namespace: a.Namespace, Action: codec.ElasticsearchPath(a)}
		if store.ValidateDurationQuery(dq) != nil {
			continue
		}
		if rng.IntN(2) == 0 && !a.Start.IsZero() {
			dq.Since = a.Start
		}
		want, err := es.DurationStats(ctx, dq, uc)
		require.NoError(t, err, "%+v", dq)
		got, err := mem.DurationStats(ctx, dq, uc)
		require.NoError(t, err)
		require.Equal(t, want.Count, got.Count, "DurationStats %+v", dq)
		require.Equal(t, want.Average == nil, got.Average == nil, "DurationStats %+v", dq)
		if want.Average != nil {
			require.InDelta(t, *want.Average, *got.Average, 1e-6, "DurationStats %+v", dq)
			durations++
		}
	}
	require.Greater(t, durations, 50, "duration queries with an average")

	// The cases OpenWhisk's match_phrase gets wrong exist in the corpus:
	// its query for dns/hello also finds dns/hello-world and dns/hello.x.
	index := es.IndexPattern()
	index = strings.ReplaceAll(index, "%s", "dns")
	owQuery := `{"size":0,"query":{"bool":{"must":[{"match_phrase":{"path":"dns/hello"}},{"range":{"start":{"gte":0}}}]}}}`
	_, body, err := srv.Do(ctx, http.MethodPost, "/"+index+"/_search?rest_total_hits_as_int=true", []byte(owQuery))
	require.NoError(t, err)
	var r struct {
		Hits struct {
			Total int `json:"total"`
		} `json:"hits"`
	}
	require.NoError(t, json.Unmarshal(body, &r), "%s", body)
	exact, err := es.Count(ctx, store.Query{Namespace: "dns", Name: "hello"}, uc)
	require.NoError(t, err)
	memN, err := mem.Count(ctx, store.Query{Namespace: "dns", Name: "hello"}, uc)
	require.NoError(t, err)
	require.Equal(t, memN, exact)
	require.Positive(t, exact)
	if dynamic { // on this package's keyword mapping, match_phrase is exact too
		require.Greater(t, r.Hits.Total, exact, "OpenWhisk's match_phrase on an analysed path finds more than dns/hello")
	} else {
		require.GreaterOrEqual(t, r.Hits.Total, exact, "match_phrase on a keyword path (other namespaces of the index included)")
	}
	t.Logf("%d queries, %d with results, %d lists with equal starts, %d duration averages; OpenWhisk's query for dns/hello: %d hits, exact: %d",
		len(qs), nonEmpty, ties, durations, r.Hits.Total, exact)
}

func ids(as []*store.Activation) []string {
	out := make([]string, len(as))
	for i, a := range as {
		out[i] = a.ActivationID
	}
	return out
}

// canonicalActivation is a record in a form where equal records compare equal.
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

// The corpus's building blocks: namespaces that share an index (Dns and
// dns) or whose paths meet ("dns/pkg" with act, "dns" with pkg/act), and
// names that an analysed match confuses (hello, hello-world, hello.x).
var (
	diffNamespaces = []string{"dns", "dns/pkg", "dns/_sub", "other", "Dns", "dns0", "a b"}
	diffNames      = []string{"act", "_util", "hello", "hello-world", "hello.x", "_ _", "a b", "pkg"}
	diffAnchors    = []int64{-31_536_000_000, -1_000, 0, 1_000, 1_700_000_000_000}
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
			start = time.Time{}
		case 1:
			start = time.UnixMilli(0)
		}
		a := &store.Activation{
			Namespace: ns, Name: name, Subject: "diff-subject", ActivationID: id, Start: start,
			Response: store.Response{StatusCode: rng.IntN(4), Result: json.RawMessage(fmt.Sprintf(`{"n":%d}`, len(out)))},
			Logs:     []string{"line " + id}, Version: store.DefaultVersion, Publish: rng.IntN(2) == 0,
		}
		if rng.IntN(8) != 0 {
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

func diffAnnotations(rng *rand.Rand, ns, name string) []store.Annotation {
	root, _, _ := strings.Cut(ns, "/")
	paths := []string{
		"", "", // absent
		`"` + ns + `/` + name + `"`,
		`"` + root + `/pkg/` + name + `"`,
		`"` + strings.ToLower(root) + `/` + name + `"`,
		`"whisk.system/utils/` + name + `"`,
		`null`, `3`,
	}
	bindings := []string{
		"", "", "", "",
		`null`, `""`, `"` + root + `/bnd"`, `"` + ns + `"`, `"other/bnd"`, `7`,
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
	if rng.IntN(12) == 0 {
		add("path", paths[rng.IntN(len(paths))])
	}
	return out
}

// diffQueriesFor returns n random queries, mostly names and bounds that
// occur in the corpus, at and around their boundaries.
func diffQueriesFor(rng *rand.Rand, corpus []*store.Activation, n int) []store.Query {
	names := map[string][]string{}
	starts := map[string][]int64{}
	for _, a := range corpus {
		k := codec.ElasticsearchName(a)
		if store.ValidateName(k) == nil && !slices.Contains(names[a.Namespace], k) {
			names[a.Namespace] = append(names[a.Namespace], k)
		}
		ms := int64(0)
		if !a.Start.IsZero() {
			ms = a.Start.UnixMilli()
		}
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
		default:
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
		case r < 3:
		case r < 9:
			if ks := names[q.Namespace]; len(ks) > 0 {
				q.Name = ks[rng.IntN(len(ks))]
			}
		default:
			q.Name = []string{"hello", "pkg/hello", "bnd/hello", "utils/act", "pkg/a b", "nope", "hello-world"}[rng.IntN(7)]
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
		if !q.Since.IsZero() && q.Upto.Before(q.Since) && rng.IntN(5) != 0 {
			q.Since, q.Upto = q.Upto, q.Since
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
		case r < 3:
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
