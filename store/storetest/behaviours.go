package storetest

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/go-whisk/activationstore/store"
)

var behaviours = []behaviour{
	{"RoundTripEveryField", func(t *testing.T, e *env) {
		a := e.full("everything", at(0))
		info := e.store(a)
		assert.Equal(t, a.DocID(), info.ID, "DocInfo.ID is OpenWhisk's document id namespace/activationId")
		requireSame(t, a, e.get(a.ActivationID))
	}},
	{"RoundTripTriggerWithoutEnd", func(t *testing.T, e *env) {
		a := &store.Activation{
			Namespace: e.ns, Name: "mytrigger", Subject: "guest-subject", ActivationID: newID(),
			Start: at(1), End: store.NoEnd, Response: store.Response{StatusCode: store.StatusSuccess, Result: json.RawMessage(`{}`)},
			Logs:    []string{`{"statusCode":0,"success":true,"activationId":"` + newID() + `","rule":"guest/r","action":"guest/a"}`},
			Version: store.DefaultVersion,
		}
		e.store(a)
		got := e.get(a.ActivationID)
		requireSame(t, a, got)
		assert.False(t, got.HasEnd(), "a trigger has no end")
		assert.Nil(t, got.Duration, "a trigger has no duration")
	}},
	{"RoundTripResultAbsentAndScalar", func(t *testing.T, e *env) {
		none := e.simple("none", at(0))
		none.Response.Result = nil
		scalar := e.simple("scalar", at(1))
		scalar.Response.Result = json.RawMessage(`[1,{"a":"b"},"c"]`)
		e.store(none)
		e.store(scalar)
		requireSame(t, none, e.get(none.ActivationID))
		requireSame(t, scalar, e.get(scalar.ActivationID))
	}},
	{"RoundTripLargeLogs", func(t *testing.T, e *env) {
		a := e.simple("big", at(0))
		line := strings.Repeat("x", 1023)
		a.Logs = make([]string, 256) // 256 KiB of logs
		for i := range a.Logs {
			a.Logs[i] = line
		}
		e.store(a)
		requireSame(t, a, e.get(a.ActivationID))
	}},
	{"StoreDoesNotAliasCaller", func(t *testing.T, e *env) {
		a := e.full("alias", at(0))
		want := a.Clone()
		e.store(a)
		a.Logs[0] = "mutated"
		a.Annotations[0].Key = "mutated"
		a.Response.Result[2] = 'X'
		got := e.get(want.ActivationID)
		requireSame(t, want, got)
		got.Logs[0] = "mutated again"
		requireSame(t, want, e.get(want.ActivationID))
	}},
	{"DuplicateIDIsConflict", func(t *testing.T, e *env) {
		a := e.simple("dup", at(0))
		e.store(a)
		b := e.simple("other", at(5))
		b.ActivationID = a.ActivationID
		_, err := e.s.Store(e.ctx(), b, store.UserContext{})
		require.ErrorIs(t, err, store.ErrConflict, "a second record with the same id must conflict")
		assert.NotErrorIs(t, err, store.ErrNotFound)
		requireSame(t, a, e.get(a.ActivationID)) // the first one wins
		assert.Equal(t, 1, e.count(store.Query{}))
	}},
	{"SameIDInOtherNamespaceIsDistinct", func(t *testing.T, e *env) {
		a := e.simple("x", at(0))
		b := a.Clone()
		b.Namespace = e.ns + "other"
		e.store(a)
		e.store(b)
		got, err := e.s.Get(e.ctx(), b.Namespace, b.ActivationID, store.UserContext{})
		require.NoError(t, err)
		assert.Equal(t, b.Namespace, got.Namespace)
	}},
	{"GetMissingIsNotFound", func(t *testing.T, e *env) {
		_, err := e.s.Get(e.ctx(), e.ns, newID(), store.UserContext{})
		require.ErrorIs(t, err, store.ErrNotFound)
	}},
	{"GetFromOtherNamespaceIsNotFound", func(t *testing.T, e *env) {
		a := e.simple("x", at(0))
		e.store(a)
		_, err := e.s.Get(e.ctx(), e.ns+"other", a.ActivationID, store.UserContext{})
		require.ErrorIs(t, err, store.ErrNotFound, "records are keyed by namespace and id")
	}},
	{"DeleteThenGetIsNotFound", func(t *testing.T, e *env) {
		a := e.simple("gone", at(0))
		keep := e.simple("kept", at(1))
		e.store(a)
		e.store(keep)
		require.NoError(t, e.s.Delete(e.ctx(), e.ns, a.ActivationID, store.UserContext{}))
		_, err := e.s.Get(e.ctx(), e.ns, a.ActivationID, store.UserContext{})
		require.ErrorIs(t, err, store.ErrNotFound)
		assert.Equal(t, []string{keep.ActivationID}, ids(e.list(store.Query{})), "a deleted record leaves the lists")
		assert.Equal(t, 1, e.count(store.Query{}))
		requireSame(t, keep, e.get(keep.ActivationID))
	}},
	{"DeleteMissingIsNotFound", func(t *testing.T, e *env) {
		err := e.s.Delete(e.ctx(), e.ns, newID(), store.UserContext{})
		require.ErrorIs(t, err, store.ErrNotFound)
	}},
	{"StoreAgainAfterDelete", func(t *testing.T, e *env) {
		a := e.simple("again", at(0))
		e.store(a)
		require.NoError(t, e.s.Delete(e.ctx(), e.ns, a.ActivationID, store.UserContext{}))
		e.store(a)
		requireSame(t, a, e.get(a.ActivationID))
	}},
	{"ListNamespaceNewestFirst", func(t *testing.T, e *env) {
		// Stored out of order: the store orders by start, not by arrival.
		as := []*store.Activation{e.simple("a", at(3)), e.simple("b", at(1)), e.simple("a", at(2)), e.simple("c", at(4))}
		for _, a := range as {
			e.store(a)
		}
		want := []string{as[3].ActivationID, as[0].ActivationID, as[2].ActivationID, as[1].ActivationID}
		assert.Equal(t, want, ids(e.list(store.Query{})))
	}},
	{"ListByName", func(t *testing.T, e *env) {
		hello := e.series("hello", 0, 3)
		e.series("hello2", 10, 2) // a name that extends another must not match
		e.series("other", 20, 2)
		assert.Equal(t, newestFirst(hello), ids(e.list(store.Query{Name: "hello"})))
		assert.Equal(t, 3, e.count(store.Query{Name: "hello"}))
		assert.Equal(t, 7, e.count(store.Query{}))
	}},
	{"ListByPackageName", func(t *testing.T, e *env) {
		// OpenWhisk's filters view keys a packaged action by pkg/action, taken
		// from its three-segment path annotation.
		a := e.simple("act", at(0))
		a.Annotations = []store.Annotation{{Key: "path", Value: json.RawMessage(`"` + e.ns + `/pkg/act"`)}}
		plain := e.simple("act", at(1))
		e.store(a)
		e.store(plain)
		assert.Equal(t, []string{a.ActivationID}, ids(e.list(store.Query{Name: "pkg/act"})))
		assert.Equal(t, []string{plain.ActivationID}, ids(e.list(store.Query{Name: "act"})))
		assert.Equal(t, 1, e.count(store.Query{Name: "pkg/act"}))
	}},
	{"ListByBindingName", func(t *testing.T, e *env) {
		// Invoked through a package binding (#4211): whisks-filters.v2.1.1
		// keys it by binding package/name, v2.1.0 by its path.
		a := e.simple("act", at(0))
		a.Annotations = []store.Annotation{
			{Key: "path", Value: json.RawMessage(`"whisk.system/utils/act"`)},
			{Key: "binding", Value: json.RawMessage(`"` + e.ns + `/mybinding"`)},
		}
		e.store(a)
		bound, pathed := e.list(store.Query{Name: "mybinding/act"}), e.list(store.Query{Name: "utils/act"})
		if e.view() == store.FilterViewV210 {
			bound, pathed = pathed, bound
		}
		assert.Equal(t, []string{a.ActivationID}, ids(bound))
		assert.Empty(t, pathed)
	}},
	{"BindingAnnotationShapes", func(t *testing.T, e *env) {
		// As the view's JavaScript: a binding that is null or "" is falsy
		// and the path decides; one that is not a string makes split throw,
		// and the view's catch lists the bare name.
		esShapes := map[string]string{`null`: "pkg/act", `""`: "", `0`: "pkg/act", `false`: "pkg/act",
			`42`: "pkg/act", `true`: "pkg/act", `{}`: "pkg/act", `[]`: "pkg/act", `"` + e.ns + `"`: "act", `"x/bnd"`: ""}
		shapes := map[string]string{`null`: "pkg/act", `""`: "pkg/act", `0`: "pkg/act", `false`: "pkg/act",
			`42`: "act", `true`: "act", `{}`: "act", `[]`: "act", `"` + e.ns + `"`: "undefined/act", `"x/bnd"`: "bnd/act"}
		want := map[string][]string{"pkg/act": {}, "act": {}, "undefined/act": {}, "bnd/act": {}}
		for i, name := range []string{`null`, `""`, `0`, `false`, `42`, `true`, `{}`, `[]`, `"` + e.ns + `"`, `"x/bnd"`} {
			a := e.simple("act", at(i))
			a.Annotations = []store.Annotation{
				{Key: "path", Value: json.RawMessage(`"` + e.ns + `/pkg/act"`)},
				{Key: "binding", Value: json.RawMessage(name)},
			}
			e.store(a)
			key := shapes[name]
			switch e.view() {
			case store.FilterViewV210:
				key = "pkg/act" // v2.1.0 reads the path only
			case store.FilterViewElasticSearch:
				// OpenWhisk's Elasticsearch path: binding + "/" + name when
				// the binding is a string ("" and another namespace's
				// binding lead outside the namespace), else the path.
				key = esShapes[name]
			}
			want[key] = append([]string{a.ActivationID}, want[key]...)
		}
		for _, name := range []string{"pkg/act", "act", "undefined/act", "bnd/act"} {
			assert.Equal(t, want[name], ids(e.list(store.Query{Name: name})), "Name %q", name)
			assert.Equal(t, len(want[name]), e.count(store.Query{Name: name}), "Name %q", name)
		}
	}},
	{"LeadingUnderscoreNamesAccepted", func(t *testing.T, e *env) {
		// OpenWhisk's EntityName accepts "_util", "_", "_ _"; only the
		// namespace's first segment, which begins the document id, may not
		// start with "_".
		plain := e.simple("_util", at(0))
		packaged := e.simple("_util", at(1))
		packaged.Annotations = []store.Annotation{{Key: "path", Value: json.RawMessage(`"` + e.ns + `/_pkg/_util"`)}}
		bare := e.simple("_", at(2))
		spaced := e.simple("_ _", at(3))
		sub := e.simple("_util", at(4))
		sub.Namespace = e.ns + "/_sub"
		sub.Annotations = nil // its path is then sub.Namespace/_util in every store
		for _, a := range []*store.Activation{plain, packaged, bare, spaced, sub} {
			e.store(a)
			got, err := e.s.Get(e.ctx(), a.Namespace, a.ActivationID, store.UserContext{})
			require.NoError(t, err, "Get(%s)", a.DocID())
			requireSame(t, a, got)
		}
		assert.Equal(t, []string{plain.ActivationID}, ids(e.list(store.Query{Name: "_util"})))
		assert.Equal(t, []string{packaged.ActivationID}, ids(e.list(store.Query{Name: "_pkg/_util", IncludeDocs: true})))
		assert.Equal(t, []string{bare.ActivationID}, ids(e.list(store.Query{Name: "_"})))
		assert.Equal(t, []string{spaced.ActivationID}, ids(e.list(store.Query{Name: "_ _"})))
		assert.Equal(t, 1, e.count(store.Query{Name: "_pkg/_util"}))
		assert.Equal(t, 4, e.count(store.Query{}))
		assert.Equal(t, []string{sub.ActivationID}, ids(e.list(store.Query{Namespace: sub.Namespace})))
		assert.Equal(t, 1, e.count(store.Query{Namespace: sub.Namespace, Name: "_util"}))
		require.NoError(t, e.s.Delete(e.ctx(), sub.Namespace, sub.ActivationID, store.UserContext{}))
		assert.Equal(t, 0, e.count(store.Query{Namespace: sub.Namespace}))
	}},
	{"LeadingUnderscoreNamespaceRefused", func(t *testing.T, e *env) {
		// The other side of the line: a document id may not start with "_".
		ctx := e.ctx()
		for _, ns := range []string{"_" + e.ns, "_", "_design", "_users/x", "_ _/pkg"} {
			a := e.simple("act", at(0))
			a.Namespace = ns
			_, err := e.s.Store(ctx, a, store.UserContext{})
			requireInvalid(t, err, "namespace")
			_, err = e.s.Get(ctx, ns, a.ActivationID, store.UserContext{})
			requireInvalid(t, err, "namespace")
			requireInvalid(t, e.s.Delete(ctx, ns, a.ActivationID, store.UserContext{}), "namespace")
			_, err = e.s.List(ctx, store.Query{Namespace: ns}, store.UserContext{})
			requireInvalid(t, err, "namespace")
			_, err = e.s.Count(ctx, store.Query{Namespace: ns, Name: "act"}, store.UserContext{})
			requireInvalid(t, err, "namespace")
		}
	}},
	{"CountNamespace", func(t *testing.T, e *env) {
		e.series("a", 0, 4)
		e.series("b", 10, 3)
		assert.Equal(t, 7, e.count(store.Query{}))
		assert.Equal(t, 0, e.count(store.Query{Name: "missing"}))
	}},
	{"SinceIsInclusive", func(t *testing.T, e *env) {
		as := e.series("s", 0, 5)
		got := e.list(store.Query{Since: as[2].Start})
		assert.Equal(t, newestFirst(as[2:]), ids(got))
		assert.Equal(t, 3, e.count(store.Query{Since: as[2].Start}))
		assert.Equal(t, 2, e.count(store.Query{Since: as[2].Start.Add(time.Millisecond)}))
	}},
	{"UptoIsInclusive", func(t *testing.T, e *env) {
		as := e.series("u", 0, 5)
		got := e.list(store.Query{Upto: as[2].Start})
		assert.Equal(t, newestFirst(as[:3]), ids(got))
		assert.Equal(t, 3, e.count(store.Query{Upto: as[2].Start}))
		assert.Equal(t, 2, e.count(store.Query{Upto: as[2].Start.Add(-time.Millisecond)}))
	}},
	{"SinceUptoWindowByName", func(t *testing.T, e *env) {
		as := e.series("w", 0, 6)
		e.series("x", 0, 6)
		q := store.Query{Name: "w", Since: as[1].Start, Upto: as[4].Start}
		assert.Equal(t, newestFirst(as[1:5]), ids(e.list(q)))
		assert.Equal(t, 4, e.count(q))
		assert.Empty(t, e.list(store.Query{Since: at(100), Upto: at(200)}))
	}},
	{"StartsBefore1970", func(t *testing.T, e *env) {
		// OpenWhisk's range starts at [key, 0] without since: records that
		// start before 1970 are listed only when Since reaches them. A
		// start of the zero time.Time is year 1 (-62135596800000), not
		// epoch 0.
		before := e.simple("old", time.UnixMilli(-5000))
		zero := e.simple("old", time.Time{})
		epoch := e.simple("old", time.UnixMilli(0))
		after := e.simple("old", time.UnixMilli(7))
		for _, a := range []*store.Activation{before, zero, epoch, after} {
			e.store(a)
		}
		for _, name := range []string{"", "old"} {
			assert.Equal(t, []string{after.ActivationID, epoch.ActivationID}, ids(e.list(store.Query{Name: name})), "no Since, Name %q", name)
			assert.Equal(t, 2, e.count(store.Query{Name: name}))
			since := store.Query{Name: name, Since: time.UnixMilli(-5000)}
			assert.Equal(t, []string{after.ActivationID, epoch.ActivationID, before.ActivationID}, ids(e.list(since)))
			assert.Equal(t, 3, e.count(since))
			assert.Equal(t, 2, e.count(store.Query{Name: name, Since: time.UnixMilli(-4999)}))
			year1 := store.Query{Name: name, Since: time.UnixMilli(-62135596800000 - 1)}
			assert.Equal(t, []string{after.ActivationID, epoch.ActivationID, before.ActivationID, zero.ActivationID}, ids(e.list(year1)))
			assert.Equal(t, []string{epoch.ActivationID}, ids(e.list(store.Query{Name: name, Upto: time.UnixMilli(0)})))
		}
		got := e.get(zero.ActivationID)
		assert.Equal(t, int64(-62135596800000), got.Start.UnixMilli(), "a zero start reads back as itself")
	}},
	{"ZeroTimeIsNotNoEnd", func(t *testing.T, e *env) {
		// the zero time.Time is an end like any other; only epoch 0
		// (store.NoEnd) is "no end"
		a := e.simple("year1", time.Time{})
		a.End = time.Time{}
		e.store(a)
		got := e.get(a.ActivationID)
		assert.True(t, got.HasEnd(), "an end of year 1 is an end")
		assert.Equal(t, int64(-62135596800000), got.End.UnixMilli(), "end")
		list := e.list(store.Query{Name: "year1", Since: time.UnixMilli(-62135596800000 - 1)}) // a zero Since is epoch 0
		require.Len(t, list, 1)
		assert.True(t, list[0].HasEnd(), "the summary keeps the end")
		require.NotNil(t, list[0].Duration, "the summary keeps the duration")
		assert.Equal(t, int64(0), *list[0].Duration)
	}},
	{"NormalisedAsOpenWhisk", func(t *testing.T, e *env) {
		// OpenWhisk trims a subject (String.trim) and normalises a version
		a := e.simple("norm", at(0))
		a.Subject, a.Version = "\t guest-subject \x00", "01.2"
		e.store(a)
		got := e.get(a.ActivationID)
		assert.Equal(t, "guest-subject", got.Subject)
		assert.Equal(t, "1.2.0", got.Version)
	}},
	{"EmptyRanges", func(t *testing.T, e *env) {
		e.store(e.simple("r", time.UnixMilli(-100)))
		e.store(e.simple("r", at(0)))
		for _, q := range []store.Query{
			{Upto: time.UnixMilli(-1)},                                   // before the default start, epoch 0
			{Since: at(1), Upto: at(0)},                                  // inverted
			{Name: "r", Since: at(0).Add(time.Millisecond), Upto: at(0)}, // inverted by 1 ms
			{Since: time.UnixMilli(-50), Upto: time.UnixMilli(-60)},
		} {
			assert.Empty(t, e.list(q), "%+v", q)
			assert.Equal(t, 0, e.count(q), "%+v", q)
		}
		assert.Len(t, e.list(store.Query{Name: "r", Since: at(0), Upto: at(0)}), 1, "since = upto is one instant")
	}},
	{"EqualStartsOrderedByDocumentID", func(t *testing.T, e *env) {
		// CouchDB orders equal view keys by document id, so do all stores:
		// pages of records with one start neither repeat nor skip any.
		const n = 9
		as := make([]*store.Activation, n)
		for i := range as {
			as[i] = e.simple("tie", at(1))
			// Stored in an order that is neither the ids' nor its reverse.
			as[i].ActivationID = fmt.Sprintf("%02x%030x", (i*5)%n, idSeq.Add(1))
		}
		for _, a := range as {
			e.store(a)
		}
		e.store(e.simple("tie", at(0)))
		want := newestFirst(sortedByID(as...))
		for _, name := range []string{"", "tie"} {
			got := ids(e.list(store.Query{Name: name, Since: at(1), IncludeDocs: name == ""}))
			assert.Equal(t, want, got, "Name %q", name)
			var pages []string
			for skip := 0; skip < n; skip += 4 {
				pages = append(pages, ids(e.list(store.Query{Name: name, Since: at(1), Skip: skip, Limit: 4}))...)
			}
			assert.Equal(t, want, pages, "pages, Name %q", name)
		}
	}},
	{"HugeSkipAndLimit", func(t *testing.T, e *env) {
		// Caller input never sizes an allocation: any non-negative limit
		// is valid, and one beyond the records means all of them.
		as := e.series("h", 0, 3)
		const huge = math.MaxInt >> 3 // 1<<60 on 64-bit platforms
		for _, limit := range []int{huge, 2e8, 1<<28 + 1, math.MaxInt} {
			assert.Equal(t, newestFirst(as), ids(e.list(store.Query{Limit: limit})), "limit %d", limit)
			assert.Equal(t, newestFirst(as[:2]), ids(e.list(store.Query{Name: "h", Skip: 1, Limit: limit, IncludeDocs: true})), "limit %d", limit)
		}
		for _, skip := range []int{huge, 2e8, math.MaxInt} {
			assert.Empty(t, e.list(store.Query{Skip: skip}), "skip %d", skip)
			assert.Empty(t, e.list(store.Query{Skip: skip, Limit: huge}), "skip %d", skip)
			assert.Equal(t, 0, e.count(store.Query{Skip: skip}), "skip %d", skip)
		}
	}},
	{"SkipDropsNewest", func(t *testing.T, e *env) {
		as := e.series("k", 0, 5)
		assert.Equal(t, newestFirst(as[:3]), ids(e.list(store.Query{Skip: 2})))
		assert.Empty(t, e.list(store.Query{Skip: 10}))
	}},
	{"LimitKeepsNewest", func(t *testing.T, e *env) {
		as := e.series("l", 0, 5)
		assert.Equal(t, newestFirst(as[3:]), ids(e.list(store.Query{Limit: 2})))
		assert.Len(t, e.list(store.Query{Limit: 0}), 5, "limit 0 means no limit")
	}},
	{"PagesCoverEverythingOnce", func(t *testing.T, e *env) {
		as := e.series("p", 0, 7)
		var pages []string
		for skip := 0; skip < 7; skip += 3 {
			pages = append(pages, ids(e.list(store.Query{Name: "p", Skip: skip, Limit: 3}))...)
		}
		assert.Equal(t, newestFirst(as), pages)
	}},
	{"CountSubtractsSkipFlooredAtZero", func(t *testing.T, e *env) {
		e.series("c", 0, 5)
		assert.Equal(t, 3, e.count(store.Query{Skip: 2}))
		assert.Equal(t, 0, e.count(store.Query{Skip: 9}))
		assert.Equal(t, 5, e.count(store.Query{Limit: 1}), "count ignores limit")
	}},
	{"SummariesWithoutResultAndLogs", func(t *testing.T, e *env) {
		a := e.full("sum", at(0))
		e.store(a)
		got := e.list(store.Query{})
		require.Len(t, got, 1)
		s := got[0]
		assert.Equal(t, a.ActivationID, s.ActivationID)
		assert.Equal(t, a.Name, s.Name)
		assert.Equal(t, a.Namespace, s.Namespace)
		assert.Equal(t, a.Version, s.Version)
		assert.Equal(t, a.Cause, s.Cause)
		assert.Equal(t, a.Start.UnixMilli(), s.Start.UnixMilli())
		assert.Equal(t, a.End.UnixMilli(), s.End.UnixMilli())
		assert.Equal(t, a.Response.StatusCode, s.Response.StatusCode, "summaries carry the status code")
		require.NotNil(t, s.Duration, "summaries of ended activations carry a duration")
		assert.Equal(t, a.End.Sub(a.Start).Milliseconds(), *s.Duration, "the view computes duration as end-start")
		assert.Nil(t, s.Response.Result, "summaries carry no result")
		assert.Empty(t, s.Logs, "summaries carry no logs")
		requireAnnotations(t, a.Annotations, s.Annotations)
	}},
	{"IncludeDocsReturnsWholeRecords", func(t *testing.T, e *env) {
		a := e.full("docs", at(0))
		b := e.full("docs", at(1))
		e.store(a)
		e.store(b)
		got := e.list(store.Query{Name: "docs", IncludeDocs: true})
		require.Len(t, got, 2)
		requireSame(t, b, got[0])
		requireSame(t, a, got[1])
	}},
	{"NamespacesAreIsolated", func(t *testing.T, e *env) {
		mine := e.series("n", 0, 2)
		for _, other := range []string{e.ns + "x", e.ns + "/pkg"} {
			o := e.simple("n", at(1))
			o.Namespace = other
			e.store(o)
		}
		assert.Equal(t, newestFirst(mine), ids(e.list(store.Query{})))
		assert.Equal(t, newestFirst(mine), ids(e.list(store.Query{Name: "n"})))
		assert.Equal(t, 2, e.count(store.Query{}))
		assert.Equal(t, 1, e.count(store.Query{Namespace: e.ns + "x"}))
	}},
	{"ConcurrentStores", func(t *testing.T, e *env) {
		const n = 64
		as := make([]*store.Activation, n)
		for i := range as {
			as[i] = e.simple("conc", at(i))
		}
		for i, err := range parallel(n, func(i int) error {
			_, err := e.s.Store(e.ctx(), as[i], store.UserContext{})
			return err
		}) {
			require.NoError(t, err, "concurrent Store %d", i)
		}
		assert.Equal(t, n, e.count(store.Query{}))
		assert.Equal(t, newestFirst(as), ids(e.list(store.Query{Name: "conc"})))
	}},
	{"ConcurrentDuplicatesOneWins", func(t *testing.T, e *env) {
		const n = 16
		a := e.simple("race", at(0))
		var ok, conflicts int
		for _, err := range parallel(n, func(int) error {
			_, err := e.s.Store(e.ctx(), a.Clone(), store.UserContext{})
			return err
		}) {
			switch {
			case err == nil:
				ok++
			case assert.ErrorIs(t, err, store.ErrConflict):
				conflicts++
			}
		}
		assert.Equal(t, 1, ok, "exactly one concurrent store of the same id succeeds")
		assert.Equal(t, n-1, conflicts)
		assert.Equal(t, 1, e.count(store.Query{}))
	}},
	{"InvalidActivationRejectedBeforeWriting", func(t *testing.T, e *env) {
		cases := []struct {
			field  string
			mutate func(a *store.Activation)
		}{
			{"namespace", func(a *store.Activation) { a.Namespace = "_design/x" }},
			{"namespace", func(a *store.Activation) { a.Namespace = "../x" }},
			{"namespace", func(a *store.Activation) { a.Namespace = "a/../../b" }},
			{"namespace", func(a *store.Activation) { a.Namespace = "a\x00b" }},
			{"namespace", func(a *store.Activation) { a.Namespace = strings.Repeat("n", 10_000) }},
			{"namespace", func(a *store.Activation) { a.Namespace = "" }},
			{"name", func(a *store.Activation) { a.Name = "a?b" }},
			{"name", func(a *store.Activation) { a.Name = "trailing " }},
			{"name", func(a *store.Activation) { a.Name = "präfix-ñ" }},
			{"name", func(a *store.Activation) { a.Name = "a/b" }},
			{"name", func(a *store.Activation) { a.Name = strings.Repeat("n", 10_000) }},
			{"activationId", func(a *store.Activation) { a.ActivationID = "not-hex-not-hex-not-hex-not-hex!" }},
			{"activationId", func(a *store.Activation) { a.ActivationID = strings.ToUpper(newID()) }},
			{"activationId", func(a *store.Activation) { a.ActivationID = "abc" }},
			{"subject", func(a *store.Activation) { a.Subject = "abc" }},
			{"subject", func(a *store.Activation) { a.Subject = "ééé" }},   // 6 bytes, 3 characters
			{"subject", func(a *store.Activation) { a.Subject = "abcd " }}, // OpenWhisk trims
			{"cause", func(a *store.Activation) { a.Cause = "../../x" }},
			{"version", func(a *store.Activation) { a.Version = "0.0.0" }},
			{"version", func(a *store.Activation) { a.Version = "one" }},
			{"response.statusCode", func(a *store.Activation) { a.Response.StatusCode = 4 }},
			{"response.result", func(a *store.Activation) { a.Response.Result = json.RawMessage(`{"truncated":`) }},
			{"annotations", func(a *store.Activation) { a.Annotations[0].Value = json.RawMessage(`nope`) }},
		}
		for _, c := range cases {
			a := e.simple("valid", at(0))
			c.mutate(a)
			_, err := e.s.Store(e.ctx(), a, store.UserContext{})
			requireInvalid(t, err, c.field)
		}
		_, err := e.s.Store(e.ctx(), nil, store.UserContext{})
		require.ErrorIs(t, err, store.ErrInvalid, "a nil activation")
		assert.Equal(t, 0, e.count(store.Query{}), "nothing was written")
	}},
	{"InvalidLookupsRejected", func(t *testing.T, e *env) {
		ctx := e.ctx()
		for _, ns := range []string{"_design", "../x", "a\x00", strings.Repeat("n", 10_000)} {
			_, err := e.s.Get(ctx, ns, newID(), store.UserContext{})
			requireInvalid(t, err, "namespace")
			requireInvalid(t, e.s.Delete(ctx, ns, newID(), store.UserContext{}), "namespace")
		}
		for _, id := range []string{"_design/x", "../" + newID(), "XYZ", newID() + "0"} {
			_, err := e.s.Get(ctx, e.ns, id, store.UserContext{})
			requireInvalid(t, err, "activationId")
			requireInvalid(t, e.s.Delete(ctx, e.ns, id, store.UserContext{}), "activationId")
		}
	}},
	{"InvalidQueriesRejected", func(t *testing.T, e *env) {
		ctx := e.ctx()
		for field, q := range map[string]store.Query{
			"namespace": {Namespace: "_design"},
			"name":      {Namespace: e.ns, Name: "a/b/c"},
			"skip":      {Namespace: e.ns, Skip: -1},
			"limit":     {Namespace: e.ns, Limit: -1},
		} {
			_, err := e.s.List(ctx, q, store.UserContext{})
			requireInvalid(t, err, field)
			_, err = e.s.Count(ctx, q, store.UserContext{})
			if field != "limit" { // count ignores limit
				requireInvalid(t, err, field)
			}
		}
	}},
	{"CanceledContextWritesNothing", func(t *testing.T, e *env) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		a := e.simple("canceled", at(0))
		_, err := e.s.Store(ctx, a, store.UserContext{})
		require.Error(t, err, "Store with a canceled context")
		require.ErrorIs(t, err, context.Canceled)
		_, err = e.s.Get(e.ctx(), e.ns, a.ActivationID, store.UserContext{})
		require.ErrorIs(t, err, store.ErrNotFound)
	}},
}
