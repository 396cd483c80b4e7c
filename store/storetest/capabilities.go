package storetest

import (
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/go-whisk/activationstore/store"
)

// capability is a group of behaviours that run on the stores implementing
// one optional interface of the store package.
type capability struct {
	name       string
	implements func(store.Store) bool
	behaviours []behaviour
}

var capabilities = []capability{
	{"BatchStorer", func(s store.Store) bool { _, ok := s.(store.BatchStorer); return ok }, batchBehaviours},
	{"DurationStater", func(s store.Store) bool { _, ok := s.(store.DurationStater); return ok }, durationBehaviours},
	{"FilterViewer", func(s store.Store) bool { _, ok := s.(store.FilterViewer); return ok }, filterViewBehaviours},
}

func (e *env) batch(as ...*store.Activation) []store.BatchResult {
	e.t.Helper()
	res, err := e.s.(store.BatchStorer).StoreBatch(e.ctx(), as, store.UserContext{})
	require.NoError(e.t, err, "StoreBatch of %d records", len(as))
	require.Len(e.t, res, len(as), "one result per record, aligned")
	return res
}

func (e *env) notFound(id string) {
	e.t.Helper()
	_, err := e.s.Get(e.ctx(), e.ns, id, store.UserContext{})
	require.ErrorIs(e.t, err, store.ErrNotFound, "Get(%s, %s)", e.ns, id)
}

var batchBehaviours = []behaviour{
	{"BatchRoundTrip", func(t *testing.T, e *env) {
		trigger := e.simple("trigger", at(3))
		trigger.End, trigger.Duration = store.NoEnd, nil
		as := []*store.Activation{e.full("full", at(0)), e.simple("a", at(1)), e.simple("a", at(2)), trigger}
		for i, r := range e.batch(as...) {
			require.NoError(t, r.Err, "record %d", i)
			assert.Equal(t, as[i].DocID(), r.DocInfo.ID, "record %d: DocInfo.ID", i)
		}
		for _, a := range as {
			requireSame(t, a, e.get(a.ActivationID))
		}
		assert.Equal(t, newestFirst(as), ids(e.list(store.Query{})), "a batch lists as records stored one by one")
		assert.Equal(t, 2, e.count(store.Query{Name: "a"}))
	}},
	{"BatchEmpty", func(t *testing.T, e *env) {
		res, err := e.s.(store.BatchStorer).StoreBatch(e.ctx(), nil, store.UserContext{})
		require.NoError(t, err)
		assert.Empty(t, res)
		assert.Zero(t, e.count(store.Query{}))
	}},
	{"BatchConflictPerRecord", func(t *testing.T, e *env) {
		old := e.simple("dup", at(0))
		e.store(old)
		again := old.Clone()
		again.Name, again.Logs = "changed", []string{"must not replace the stored record"}
		before, after := e.simple("x", at(1)), e.simple("x", at(2))
		res := e.batch(before, again, after)
		require.NoError(t, res[0].Err)
		require.ErrorIs(t, res[1].Err, store.ErrConflict, "the record whose document exists")
		require.NoError(t, res[2].Err, "a conflict keeps no other record from being stored")
		requireSame(t, old, e.get(old.ActivationID))
		requireSame(t, before, e.get(before.ActivationID))
		requireSame(t, after, e.get(after.ActivationID))
		assert.Equal(t, 3, e.count(store.Query{}))
	}},
	{"BatchInvalidPerRecord", func(t *testing.T, e *env) {
		good1, good2 := e.simple("ok", at(0)), e.simple("ok", at(2))
		short := e.simple("bad", at(1))
		short.Subject = "abc"
		badJSON := e.simple("bad", at(3))
		badJSON.Response.Result = json.RawMessage(`{"unterminated":`)
		res := e.batch(good1, short, badJSON, good2)
		require.NoError(t, res[0].Err)
		requireInvalid(t, res[1].Err, "subject")
		requireInvalid(t, res[2].Err, "response.result")
		require.NoError(t, res[3].Err, "an invalid record keeps no other record from being stored")
		requireSame(t, good1, e.get(good1.ActivationID))
		requireSame(t, good2, e.get(good2.ActivationID))
		e.notFound(short.ActivationID)
		e.notFound(badJSON.ActivationID)
		assert.Equal(t, []string{good2.ActivationID, good1.ActivationID}, ids(e.list(store.Query{})))
	}},
}

func (e *env) durations(q store.DurationQuery) (store.DurationStats, error) {
	if q.Namespace == "" {
		q.Namespace = e.ns
	}
	return e.s.(store.DurationStater).DurationStats(e.ctx(), q, store.UserContext{})
}

// durationsUnsupported reports whether the store says it cannot answer,
// and then checks that it says so for every query, as the contract asks.
func (e *env) durationsUnsupported() bool {
	e.t.Helper()
	_, err := e.durations(store.DurationQuery{Action: e.ns + "/act"})
	if !errors.Is(err, store.ErrUnsupported) {
		return false
	}
	for _, q := range []store.DurationQuery{
		{Action: e.ns + "/pkg/act", Since: at(0)},
		{Binding: e.ns + "/bnd", Name: "act"},
	} {
		_, err := e.durations(q)
		require.ErrorIs(e.t, err, store.ErrUnsupported, "a store that cannot answer says so for every query: %+v", q)
	}
	e.t.Logf("DurationStats: the store cannot answer: %v", err)
	return true
}

var durationBehaviours = []behaviour{
	{"DurationStatsAverageAndCount", func(t *testing.T, e *env) {
		if e.durationsUnsupported() {
			return
		}
		mk := func(name string, i int, dur *int64, ann ...store.Annotation) {
			a := e.simple(name, at(i))
			a.Duration = dur
			a.Annotations = append(a.Annotations, ann...)
			e.store(a)
		}
		mk("act", 0, ptr[int64](1000)) // before the window
		mk("act", 10, ptr[int64](10))
		mk("act", 11, ptr[int64](20))
		mk("act", 12, nil) // counted, not averaged
		mk("other", 13, ptr[int64](5000))
		mk("act-2", 14, ptr[int64](5000))
		mk("act", 15, ptr[int64](40), store.Annotation{Key: "binding", Value: json.RawMessage(`"` + e.ns + `/bnd"`)})
		mk("act", 16, ptr[int64](7), store.Annotation{Key: "path", Value: json.RawMessage(`"` + e.ns + `/pkg/act"`)})

		got, err := e.durations(store.DurationQuery{Action: e.ns + "/act", Since: at(10)})
		require.NoError(t, err)
		assert.Equal(t, int64(3), got.Count, "the action's activations from Since on, with or without a duration")
		require.NotNil(t, got.Average)
		assert.InDelta(t, 15.0, *got.Average, 1e-9, "the mean of the durations there are")

		got, err = e.durations(store.DurationQuery{Action: e.ns + "/act"})
		require.NoError(t, err)
		assert.Equal(t, int64(4), got.Count, "a zero Since: no bound")
		require.NotNil(t, got.Average)
		assert.InDelta(t, 1030.0/3, *got.Average, 1e-9)

		got, err = e.durations(store.DurationQuery{Binding: e.ns + "/bnd", Name: "act", Since: at(10)})
		require.NoError(t, err)
		assert.Equal(t, int64(1), got.Count, "through a binding: binding + / + name")
		require.NotNil(t, got.Average)
		assert.InDelta(t, 40.0, *got.Average, 1e-9)

		got, err = e.durations(store.DurationQuery{Action: e.ns + "/pkg/act", Since: at(16)})
		require.NoError(t, err)
		assert.Equal(t, int64(1), got.Count, "Since is inclusive; a packaged action by its path")
		require.NotNil(t, got.Average)
		assert.InDelta(t, 7.0, *got.Average, 1e-9)
	}},
	{"DurationStatsNoMatch", func(t *testing.T, e *env) {
		if e.durationsUnsupported() {
			return
		}
		e.store(e.simple("act", at(0)))
		for _, q := range []store.DurationQuery{
			{Action: e.ns + "/missing"},
			{Action: e.ns + "/act", Since: at(1)},
			{Namespace: e.ns + "x", Action: e.ns + "/act"},
		} {
			got, err := e.durations(q)
			require.NoError(t, err, "%+v", q)
			assert.Zero(t, got.Count, "%+v", q)
			assert.Nil(t, got.Average, "%+v: no duration, no average", q)
		}
		nodur := e.simple("nodur", at(0))
		nodur.Duration = nil
		e.store(nodur)
		got, err := e.durations(store.DurationQuery{Action: e.ns + "/nodur"})
		require.NoError(t, err)
		assert.Equal(t, int64(1), got.Count)
		assert.Nil(t, got.Average, "activations without a duration give no average")
	}},
	{"DurationStatsInvalidQuery", func(t *testing.T, e *env) {
		if e.durationsUnsupported() {
			return
		}
		for _, c := range []struct {
			field string
			q     store.DurationQuery
		}{
			{"action", store.DurationQuery{}},
			{"action", store.DurationQuery{Action: "a/b/c/d"}},
			{"binding", store.DurationQuery{Binding: "_bad", Name: "act"}},
			{"name", store.DurationQuery{Binding: e.ns + "/bnd", Name: "a/b"}},
			{"namespace", store.DurationQuery{Namespace: "_bad", Action: "_bad/act"}},
		} {
			_, err := e.durations(c.q)
			require.ErrorIs(t, err, store.ErrInvalid, "%+v", c.q)
			var ie *store.InvalidError
			require.ErrorAs(t, err, &ie, "%+v", c.q)
			assert.Equal(t, c.field, ie.Field, "%+v: %v", c.q, err)
		}
		_, err := e.durations(store.DurationQuery{Action: e.ns + "/act", Since: time.UnixMilli(0)})
		require.NoError(t, err, "epoch 0 is a valid bound")
	}},
}

var filterViewBehaviours = []behaviour{
	{"FilterViewKnownAndStable", func(t *testing.T, e *env) {
		v := e.s.(store.FilterViewer).FilterView()
		assert.True(t, v.Valid() || v == store.FilterViewElasticSearch, "FilterView() = %q: not one of the store package's constants", v)
		e.store(e.simple("act", at(0)))
		assert.Equal(t, v, e.s.(store.FilterViewer).FilterView(), "the same for the life of the store")
	}},
}
