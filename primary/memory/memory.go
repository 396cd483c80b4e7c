// Package memory is an in-memory activation store: the reference
// implementation of the store contract, and the primary that unit tests of
// controllers and invokers use.
//
// List and Count read indexes kept per namespace and per namespace+name
// (OpenWhisk's two activation views), so they cost O(log n + result) rather
// than a scan of every record. Records are copied in and out: callers never
// share memory with the store.
//
// Queries answer as OpenWhisk's CouchDB views do, record for record and in
// the same order (a differential test in primary/couchdb pins this): keys
// are [namespace, start] and [namespace/pathFilter, start], a start of the
// zero time.Time is year 1, a query without Since starts at epoch 0 (so records
// that start before 1970 are listed only by a query whose Since reaches
// them), and records with equal starts are ordered by document id. Which
// activations a Query.Name selects depends on the version of the filters
// view emulated; see [WithFilterView].
package memory

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/go-whisk/activationstore/codec"
	"github.com/go-whisk/activationstore/store"
)

// Store is an in-memory store.Store, store.BatchStorer, store.DurationStater
// and store.FilterViewer, safe for concurrent use. The zero value is not
// usable; call New.
type Store struct {
	view   store.FilterView
	mu     sync.RWMutex
	docs   map[string]*store.Activation // by document id
	byNS   map[string]*index            // namespace view
	byName map[string]*index            // filters view: namespace/pathFilter
}

// Option configures a Store.
type Option func(*config)

type config struct {
	view store.FilterView
}

// WithFilterView selects the version of OpenWhisk's name-filter view whose
// keys Query.Name matches: store.FilterViewV211 (master) or
// store.FilterViewV210 (deployments that have not migrated). Use the version
// of the CouchDB database the store stands in for (couchdb.Store.FilterView),
// or store.FilterViewElasticSearch to answer as primary/elasticsearch does
// (the "path" member, matched exactly, within the query's namespace).
// Default: store.FilterViewV211.
func WithFilterView(v store.FilterView) Option {
	return func(c *config) { c.view = v }
}

var (
	_ store.Store          = (*Store)(nil)
	_ store.BatchStorer    = (*Store)(nil)
	_ store.DurationStater = (*Store)(nil)
	_ store.FilterViewer   = (*Store)(nil)
)

// New returns an empty store. It panics when an option is invalid (a
// FilterView that is not one of the store package's constants): a
// programming error, as with regexp.MustCompile.
func New(opts ...Option) *Store {
	cfg := config{view: store.FilterViewV211}
	for _, o := range opts {
		o(&cfg)
	}
	if !cfg.view.Valid() && cfg.view != store.FilterViewElasticSearch {
		panic(fmt.Sprintf("memory: WithFilterView(%q): unknown view (want store.FilterViewV210, store.FilterViewV211 or store.FilterViewElasticSearch)", string(cfg.view)))
	}
	return &Store{
		view:   cfg.view,
		docs:   make(map[string]*store.Activation),
		byNS:   make(map[string]*index),
		byName: make(map[string]*index),
	}
}

// Store stores a copy of a, normalised as OpenWhisk and the codec keep it
// (store.Normalize: the subject trimmed, the version normalised). A record
// with the same namespace and id is a conflict.
func (s *Store) Store(ctx context.Context, a *store.Activation, _ store.UserContext) (store.DocInfo, error) {
	if err := ctx.Err(); err != nil {
		return store.DocInfo{}, err
	}
	if err := store.ValidateActivation(a); err != nil {
		return store.DocInfo{}, err
	}
	c := store.Normalize(a)
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.insertLocked(c)
}

// StoreBatch stores every record under one lock; results align with as.
func (s *Store) StoreBatch(ctx context.Context, as []*store.Activation, _ store.UserContext) ([]store.BatchResult, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	res := make([]store.BatchResult, len(as))
	clones := make([]*store.Activation, len(as))
	for i, a := range as {
		if err := store.ValidateActivation(a); err != nil {
			res[i].Err = err
			continue
		}
		clones[i] = store.Normalize(a)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, c := range clones {
		if c != nil {
			res[i].DocInfo, res[i].Err = s.insertLocked(c)
		}
	}
	return res, nil
}

func (s *Store) insertLocked(a *store.Activation) (store.DocInfo, error) {
	id := a.DocID()
	if _, ok := s.docs[id]; ok {
		return store.DocInfo{}, store.ConflictError(id)
	}
	s.docs[id] = a
	e := entry{start: startKey(a.Start), id: id}
	indexFor(s.byNS, a.Namespace).insert(e)
	indexFor(s.byName, s.nameKey(a.Namespace, s.pathFilter(a))).insert(e)
	return store.DocInfo{ID: id}, nil
}

// Get returns a copy of the record.
func (s *Store) Get(ctx context.Context, namespace, activationID string, _ store.UserContext) (*store.Activation, error) {
	if err := validateKey(ctx, namespace, activationID); err != nil {
		return nil, err
	}
	s.mu.RLock()
	a, ok := s.docs[store.DocID(namespace, activationID)]
	s.mu.RUnlock()
	if !ok {
		return nil, store.NotFoundError(namespace, activationID)
	}
	return a.Clone(), nil
}

// Delete removes the record.
func (s *Store) Delete(ctx context.Context, namespace, activationID string, _ store.UserContext) error {
	if err := validateKey(ctx, namespace, activationID); err != nil {
		return err
	}
	id := store.DocID(namespace, activationID)
	s.mu.Lock()
	defer s.mu.Unlock()
	a, ok := s.docs[id]
	if !ok {
		return store.NotFoundError(namespace, activationID)
	}
	delete(s.docs, id)
	e := entry{start: startKey(a.Start), id: id}
	removeFrom(s.byNS, a.Namespace, e)
	removeFrom(s.byName, s.nameKey(a.Namespace, s.pathFilter(a)), e)
	return nil
}

// List returns the matching records newest first: whole copies with
// q.IncludeDocs, summaries otherwise.
func (s *Store) List(ctx context.Context, q store.Query, _ store.UserContext) ([]*store.Activation, error) {
	if err := validateQuery(ctx, q); err != nil {
		return nil, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	ix := s.indexOf(q)
	if ix == nil {
		return []*store.Activation{}, nil
	}
	lo, hi := ix.window(q)
	hi -= q.Skip // skip drops the newest
	if q.Limit > 0 && hi-lo > q.Limit {
		lo = hi - q.Limit
	}
	out := make([]*store.Activation, 0, max(hi-lo, 0))
	for i := hi - 1; i >= lo; i-- {
		a := s.docs[ix.entries[i].id]
		if q.IncludeDocs {
			out = append(out, a.Clone())
		} else {
			out = append(out, a.Summary())
		}
	}
	return out, nil
}

// Count returns the number of matching records minus q.Skip, floored at 0.
func (s *Store) Count(ctx context.Context, q store.Query, _ store.UserContext) (int, error) {
	q.Limit = 0 // count ignores limit
	if err := validateQuery(ctx, q); err != nil {
		return 0, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	ix := s.indexOf(q)
	if ix == nil {
		return 0, nil
	}
	lo, hi := ix.window(q)
	return max(hi-lo-q.Skip, 0), nil
}

// FilterView is the version of the name-filter view the store emulates.
func (s *Store) FilterView() store.FilterView { return s.view }

// Len returns the number of records stored.
func (s *Store) Len() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.docs)
}

func (s *Store) indexOf(q store.Query) *index {
	if q.Name != "" {
		return s.byName[s.nameKey(q.Namespace, q.Name)]
	}
	return s.byNS[q.Namespace]
}

// pathFilter is the name under which a Query.Name finds a.
func (s *Store) pathFilter(a *store.Activation) string {
	if s.view == store.FilterViewElasticSearch {
		return codec.ElasticsearchName(a)
	}
	return s.view.PathFilter(a)
}

// nameKey is the key of the name index. The CouchDB views key
// namespace + "/" + pathFilter as one string, so "guest/pkg" + "act" and
// "guest" + "pkg/act" share a key there; Elasticsearch filters the
// namespace and the path apart, so they do not.
func (s *Store) nameKey(namespace, name string) string {
	if s.view == store.FilterViewElasticSearch {
		return namespace + "\x00" + name
	}
	return namespace + "/" + name
}

// DurationStats answers as OpenWhisk's ElasticSearchDurationChecker (made
// exact, as primary/elasticsearch answers): the activations of
// q.Namespace whose codec.ElasticsearchPath is q.Binding + "/" + q.Name
// (or q.Action when q.Binding is empty) and that start at or after q.Since
// (a zero Since: no bound). Whatever the filter view.
func (s *Store) DurationStats(ctx context.Context, q store.DurationQuery, _ store.UserContext) (store.DurationStats, error) {
	if err := ctx.Err(); err != nil {
		return store.DurationStats{}, err
	}
	if err := store.ValidateDurationQuery(q); err != nil {
		return store.DurationStats{}, err
	}
	path := q.Action
	if q.Binding != "" {
		path = q.Binding + "/" + q.Name
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	var out store.DurationStats
	ix := s.byNS[q.Namespace]
	if ix == nil {
		return out, nil
	}
	lo := 0
	if !q.Since.IsZero() {
		since := q.Since.UnixMilli()
		lo, _ = slices.BinarySearchFunc(ix.entries, since, func(e entry, t int64) int { return cmpInt(e.start, t) })
	}
	var sum float64
	var n int64
	for _, e := range ix.entries[lo:] {
		a := s.docs[e.id]
		if codec.ElasticsearchPath(a) != path {
			continue
		}
		out.Count++
		if a.Duration != nil {
			sum += float64(*a.Duration)
			n++
		}
	}
	if n > 0 {
		avg := sum / float64(n)
		out.Average = &avg
	}
	return out, nil
}

func validateKey(ctx context.Context, namespace, activationID string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := store.ValidateNamespace(namespace); err != nil {
		return err
	}
	return store.ValidateActivationID(activationID)
}

func validateQuery(ctx context.Context, q store.Query) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return store.ValidateQuery(q)
}

// startKey is the start a document carries, and so its view key: epoch
// milliseconds (the zero time.Time is year 1, -62135596800000).
func startKey(t time.Time) int64 { return t.UnixMilli() }

// entry orders records as the views do: by start, then document id.
type entry struct {
	start int64
	id    string
}

func (e entry) compare(o entry) int {
	if e.start != o.start {
		if e.start < o.start {
			return -1
		}
		return 1
	}
	return strings.Compare(e.id, o.id)
}

// index holds entries in ascending order. Activations mostly arrive in start
// order, so inserts are mostly appends.
type index struct{ entries []entry }

func indexFor(m map[string]*index, key string) *index {
	ix := m[key]
	if ix == nil {
		ix = &index{}
		m[key] = ix
	}
	return ix
}

func (ix *index) insert(e entry) {
	n := len(ix.entries)
	if n == 0 || ix.entries[n-1].compare(e) < 0 {
		ix.entries = append(ix.entries, e)
		return
	}
	i, _ := slices.BinarySearchFunc(ix.entries, e, entry.compare)
	ix.entries = slices.Insert(ix.entries, i, e)
}

func removeFrom(m map[string]*index, key string, e entry) {
	ix := m[key]
	if ix == nil {
		return
	}
	if i, found := slices.BinarySearchFunc(ix.entries, e, entry.compare); found {
		ix.entries = slices.Delete(ix.entries, i, i+1)
	}
	if len(ix.entries) == 0 {
		delete(m, key)
	}
}

// window returns the half-open range [lo, hi) of entries in OpenWhisk's
// key range [since, upto]: since is q.Since, or epoch 0 when unset (the
// view's start key is [key, 0]); upto is q.Upto, or unbounded.
func (ix *index) window(q store.Query) (lo, hi int) {
	since := int64(0)
	if !q.Since.IsZero() {
		since = q.Since.UnixMilli()
	}
	lo, _ = slices.BinarySearchFunc(ix.entries, since, func(e entry, t int64) int {
		return cmpInt(e.start, t)
	})
	hi = len(ix.entries)
	if !q.Upto.IsZero() {
		upto := q.Upto.UnixMilli()
		hi, _ = slices.BinarySearchFunc(ix.entries, upto, func(e entry, t int64) int {
			if e.start <= t {
				return -1
			}
			return 1
		})
	}
	return lo, max(hi, lo)
}

func cmpInt(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
