// Package storetest is the conformance suite of the store contract. Every
// driver runs it:
//
//	func TestConformance(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) store.Store { return memory.New() })
//	}
//
// newStore is called once per behaviour; it may return a store shared with
// other behaviours, since every behaviour works in namespaces of its own.
// The behaviours of an optional capability (store.BatchStorer,
// store.DurationStater, store.FilterViewer) run on the stores that
// implement it.
package storetest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/go-whisk/activationstore/store"
)

// Run checks every behaviour of the store contract against the stores that
// newStore returns, and the behaviours of each optional capability
// (store.BatchStorer, store.DurationStater, store.FilterViewer) the store
// implements; it logs the capabilities it found. newStore is called once
// more, first, to find them.
func Run(t *testing.T, newStore func(t *testing.T) store.Store) {
	probe := newStore(t)
	require.NotNil(t, probe, "newStore returned nil")
	all := slices.Clone(behaviours)
	var found []string
	for _, c := range capabilities {
		if c.implements(probe) {
			found = append(found, c.name)
			all = append(all, c.behaviours...)
		}
	}
	t.Logf("storetest: %T implements %v", probe, found)
	for _, b := range all {
		t.Run(b.name, func(t *testing.T) {
			s := newStore(t)
			require.NotNil(t, s, "newStore returned nil")
			b.run(t, &env{t: t, s: s, ns: uniqueNamespace(b.name)})
		})
	}
}

type behaviour struct {
	name string
	run  func(t *testing.T, e *env)
}

var nsSeq atomic.Int64

// uniqueNamespace keeps behaviours apart even on a shared database.
func uniqueNamespace(name string) string {
	clean := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' {
			return r
		}
		return -1
	}, name)
	if len(clean) > 40 {
		clean = clean[:40]
	}
	return fmt.Sprintf("st%d%s%d", time.Now().UnixNano()%1e9, clean, nsSeq.Add(1))
}

// env is one behaviour's store, namespace and helpers.
type env struct {
	t  *testing.T
	s  store.Store
	ns string
}

var idSeq atomic.Uint64

// id returns a fresh valid activation id.
func newID() string {
	return fmt.Sprintf("%016x%016x", uint64(time.Now().UnixNano()), idSeq.Add(1))
}

var base = time.UnixMilli(1_700_000_000_000)

// at returns the time i seconds after a fixed base, at millisecond precision.
func at(i int) time.Time { return base.Add(time.Duration(i) * time.Second) }

func ptr[T any](v T) *T { return &v }

// full returns an activation with every field set.
func (e *env) full(name string, start time.Time) *store.Activation {
	return &store.Activation{
		Namespace:    e.ns,
		Name:         name,
		Subject:      "guest-subject",
		ActivationID: newID(),
		Start:        start,
		End:          start.Add(1500 * time.Millisecond),
		Cause:        newID(),
		Response: store.Response{
			StatusCode: store.StatusApplicationError,
			Result:     json.RawMessage(`{"error":"boom","nested":{"n":42,"f":3.5,"arr":[1,"two",null,true]},"unicode":"héllo ☃"}`),
			Size:       ptr[int64](77),
		},
		Logs:    []string{"2024-01-01T00:00:00.000Z stdout: first", "2024-01-01T00:00:00.001Z stderr: second ☃"},
		Version: "1.2.3",
		Publish: true,
		Annotations: []store.Annotation{
			{Key: "path", Value: json.RawMessage(`"` + e.ns + `/` + name + `"`)},
			{Key: "kind", Value: json.RawMessage(`"nodejs:20"`)},
			{Key: "limits", Value: json.RawMessage(`{"concurrency":1,"logs":10,"memory":256,"timeout":60000}`)},
			{Key: "waitTime", Value: json.RawMessage(`12`)},
			{Key: "initTime", Value: json.RawMessage(`34`)},
			{Key: "timeout", Value: json.RawMessage(`false`)},
			{Key: "zeta", Value: json.RawMessage(`null`)},
			{Key: "alpha", Value: json.RawMessage(`[1,2]`), Init: true},
		},
		Duration: ptr[int64](1234),
	}
}

// simple returns a minimal successful activation of action name.
func (e *env) simple(name string, start time.Time) *store.Activation {
	return &store.Activation{
		Namespace:    e.ns,
		Name:         name,
		Subject:      "guest-subject",
		ActivationID: newID(),
		Start:        start,
		End:          start.Add(10 * time.Millisecond),
		Response:     store.Response{StatusCode: store.StatusSuccess, Result: json.RawMessage(`{"ok":true}`)},
		Logs:         []string{"log line"},
		Version:      store.DefaultVersion,
		Annotations:  []store.Annotation{{Key: "path", Value: json.RawMessage(`"` + e.ns + `/` + name + `"`)}},
		Duration:     ptr[int64](10),
	}
}

func (e *env) ctx() context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	e.t.Cleanup(cancel)
	return ctx
}

func (e *env) store(a *store.Activation) store.DocInfo {
	e.t.Helper()
	info, err := e.s.Store(e.ctx(), a, store.UserContext{})
	require.NoError(e.t, err, "Store(%s)", a.DocID())
	return info
}

func (e *env) get(id string) *store.Activation {
	e.t.Helper()
	got, err := e.s.Get(e.ctx(), e.ns, id, store.UserContext{})
	require.NoError(e.t, err, "Get(%s, %s)", e.ns, id)
	require.NotNil(e.t, got)
	return got
}

func (e *env) list(q store.Query) []*store.Activation {
	e.t.Helper()
	if q.Namespace == "" {
		q.Namespace = e.ns
	}
	got, err := e.s.List(e.ctx(), q, store.UserContext{})
	require.NoError(e.t, err, "List(%+v)", q)
	return got
}

func (e *env) count(q store.Query) int {
	e.t.Helper()
	if q.Namespace == "" {
		q.Namespace = e.ns
	}
	n, err := e.s.Count(e.ctx(), q, store.UserContext{})
	require.NoError(e.t, err, "Count(%+v)", q)
	return n
}

// series stores n activations of name, one second apart from start index
// first, and returns them oldest first.
func (e *env) series(name string, first, n int) []*store.Activation {
	out := make([]*store.Activation, n)
	for i := range n {
		out[i] = e.simple(name, at(first+i))
		e.store(out[i])
	}
	return out
}

// view is the filters view version the store answers Query.Name with:
// its FilterView method's answer, else OpenWhisk master's v2.1.1.
func (e *env) view() store.FilterView {
	if v, ok := e.s.(store.FilterViewer); ok {
		return v.FilterView()
	}
	return store.FilterViewV211
}

// sortedByID returns as ordered by document id, oldest first among equal starts.
func sortedByID(as ...*store.Activation) []*store.Activation {
	out := slices.Clone(as)
	slices.SortFunc(out, func(a, b *store.Activation) int { return strings.Compare(a.DocID(), b.DocID()) })
	return out
}

// ids returns the activation ids of as, in order.
func ids(as []*store.Activation) []string {
	out := make([]string, len(as))
	for i, a := range as {
		out[i] = a.ActivationID
	}
	return out
}

// newestFirst returns the ids of as (oldest first) newest first.
func newestFirst(as []*store.Activation) []string {
	out := ids(as)
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	return out
}

// requireSame checks that got holds every field of want. Raw JSON is
// compared semantically: a database may re-serialise it.
func requireSame(t *testing.T, want, got *store.Activation) {
	t.Helper()
	require.NotNil(t, got)
	assert.Equal(t, want.Namespace, got.Namespace, "namespace")
	assert.Equal(t, want.Name, got.Name, "name")
	assert.Equal(t, store.TrimSubject(want.Subject), got.Subject, "subject, trimmed as OpenWhisk trims it")
	assert.Equal(t, want.ActivationID, got.ActivationID, "activationId")
	assert.Equal(t, want.Start.UnixMilli(), got.Start.UnixMilli(), "start")
	assert.Equal(t, want.HasEnd(), got.HasEnd(), "has end")
	if want.HasEnd() {
		assert.Equal(t, want.End.UnixMilli(), got.End.UnixMilli(), "end")
	}
	assert.Equal(t, want.Cause, got.Cause, "cause")
	assert.Equal(t, want.Response.StatusCode, got.Response.StatusCode, "response.statusCode")
	requireJSONEqual(t, want.Response.Result, got.Response.Result, "response.result")
	assert.Equal(t, want.Response.Size, got.Response.Size, "response.size")
	assert.Equal(t, normLogs(want.Logs), normLogs(got.Logs), "logs")
	assert.Equal(t, store.NormalizeVersion(want.Version), got.Version, "version, normalised as OpenWhisk writes it")
	assert.Equal(t, want.Publish, got.Publish, "publish")
	assert.Equal(t, want.Duration, got.Duration, "duration")
	requireAnnotations(t, want.Annotations, got.Annotations)
}

func requireAnnotations(t *testing.T, want, got []store.Annotation) {
	t.Helper()
	require.Len(t, got, len(want), "annotations")
	for i := range want {
		assert.Equal(t, want[i].Key, got[i].Key, "annotations[%d].key (order must be kept)", i)
		requireJSONEqual(t, want[i].Value, got[i].Value, fmt.Sprintf("annotations[%d].value", i))
		assert.Equal(t, want[i].Init, got[i].Init, "annotations[%d].init", i)
		assert.Equal(t, want[i].Encryption, got[i].Encryption, "annotations[%d].encryption", i)
	}
}

func normLogs(l []string) []string {
	if len(l) == 0 {
		return nil
	}
	return l
}

func requireJSONEqual(t *testing.T, want, got json.RawMessage, what string) {
	t.Helper()
	if want == nil || string(want) == "null" {
		assert.True(t, got == nil || string(got) == "null", "%s: want absent, got %s", what, got)
		return
	}
	require.NotNil(t, got, "%s: want %s, got absent", what, want)
	assert.JSONEq(t, string(want), string(got), what)
}

// requireInvalid checks that err is ErrInvalid naming field.
func requireInvalid(t *testing.T, err error, field string) {
	t.Helper()
	require.Error(t, err, "want ErrInvalid for %s", field)
	require.ErrorIs(t, err, store.ErrInvalid)
	var ie *store.InvalidError
	require.ErrorAs(t, err, &ie, "want *store.InvalidError naming the field")
	assert.True(t, strings.HasPrefix(ie.Field, field), "error names field %q, want %q (%v)", ie.Field, field, err)
}

// parallel runs fn(i) for i in [0,n) on n goroutines and returns their errors.
func parallel(n int, fn func(i int) error) []error {
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { errs[i] = fn(i) })
	}
	wg.Wait()
	return errs
}

var _ = errors.Is
