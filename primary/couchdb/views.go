package couchdb

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"

	"github.com/go-kivik/kivik/v4"

	"github.com/go-whisk/activationstore/codec"
	"github.com/go-whisk/activationstore/store"
)

// OpenWhisk's design document and view names (whisk.db.activations-ddoc at
// OpenWhisk master; the filters view's version is the Store's FilterView).
const (
	// NamespaceDDoc holds the view of a namespace's activations, keyed
	// [namespace, start].
	NamespaceDDoc = "whisks.v2.1.0"
	// ActivationsView is the view's name in both design documents.
	ActivationsView = "activations"
)

// MaxViewLimit is the largest limit List sends to CouchDB: CouchDB 3's
// default query_limit, above which it refuses a view query (400) instead of
// answering. A Query.Limit above it is sent as no limit, which CouchDB caps
// at query_limit itself: the same rows.
const MaxViewLimit = 1 << 28

// maxViewSkip is the largest skip List sends: 2^53-1, the largest integer
// JavaScript and a JSON double carry exactly (servers echo the skip as the
// reply's offset). No view holds that many rows, so a larger Query.Skip
// selects the same nothing.
const maxViewSkip int64 = 1<<53 - 1

// top is OpenWhisk's WhiskQueries.TOP: it collates after every number and
// every string a key holds.
const top = "\ufff0"

// viewRange returns the design document and OpenWhisk's logical key range
// [startKey, endKey] for q. The filters view keys a packaged action, or one
// reached through a binding, by "pkg/action" (see store.FilterView).
func (s *Store) viewRange(q store.Query) (ddoc string, startKey, endKey []any) {
	ddoc, path := NamespaceDDoc, q.Namespace
	if q.Name != "" {
		ddoc, path = string(s.view), q.Namespace+"/"+q.Name
	}
	return "_design/" + ddoc, []any{path, since(q.Since)}, []any{path, upto(q.Upto), top}
}

// emptyRange reports whether q's key range holds no key: Upto before the
// range's start (Since, or epoch 0 without Since). CouchDB refuses such a
// range ("No rows can match your key range", 400) rather than answering
// with nothing, so List and Count answer without asking.
func emptyRange(q store.Query) bool {
	if q.Upto.IsZero() {
		return false
	}
	start := int64(0)
	if !q.Since.IsZero() {
		start = q.Since.UnixMilli()
	}
	return q.Upto.UnixMilli() < start
}

// listParams are the view parameters of List, exactly OpenWhisk's
// listCollectionInNamespace: descending, so the keys are swapped.
func (s *Store) listParams(q store.Query) (ddoc string, params map[string]any) {
	ddoc, startKey, endKey := s.viewRange(q)
	params = map[string]any{
		"startkey":   endKey,
		"endkey":     startKey,
		"descending": "true",
		"reduce":     "false",
	}
	if q.Skip > 0 {
		params["skip"] = min(int64(q.Skip), maxViewSkip)
	}
	if q.Limit > 0 && q.Limit <= MaxViewLimit {
		params["limit"] = q.Limit
	}
	if q.IncludeDocs {
		params["include_docs"] = "true"
	}
	if s.cfg.updateAfter {
		params["stale"] = "update_after"
	}
	return ddoc, params
}

// countParams are the view parameters of Count: the same keys, ascending,
// reduced, without skip or limit.
func (s *Store) countParams(q store.Query) (ddoc string, params map[string]any) {
	ddoc, startKey, endKey := s.viewRange(q)
	params = map[string]any{
		"startkey": startKey,
		"endkey":   endKey,
		"reduce":   "true",
	}
	if s.cfg.updateAfter {
		params["stale"] = "update_after"
	}
	return ddoc, params
}

// List returns the activations that match q, newest first, through
// OpenWhisk's views. Without IncludeDocs they are the views' summaries (no
// subject, result or logs). As in OpenWhisk, a document that cannot be
// decoded is left out of the list (and logged at Warn). Any non-negative
// Skip and Limit is valid: a Limit above MaxViewLimit means no limit, and a
// Skip beyond the rows gives an empty list.
func (s *Store) List(ctx context.Context, q store.Query, _ store.UserContext) ([]*store.Activation, error) {
	if err := store.ValidateQuery(q); err != nil {
		return nil, err
	}
	out := []*store.Activation{} // grown by the rows that come, never sized by q.Limit
	if emptyRange(q) {
		return out, ctx.Err()
	}
	ddoc, params := s.listParams(q)
	ctx, cancel := s.withTimeout(ctx)
	defer cancel()
	rs := s.db.Query(ctx, ddoc, ActivationsView, kivik.Params(params))
	defer rs.Close()
	for rs.Next() {
		var raw json.RawMessage
		var a *store.Activation
		var err error
		if q.IncludeDocs {
			if err = rs.ScanDoc(&raw); err == nil {
				var doc *codec.Document
				if doc, err = codec.UnmarshalDocument(raw); err == nil {
					a = doc.Activation
				}
			}
		} else {
			if err = rs.ScanValue(&raw); err == nil {
				a, err = codec.UnmarshalSummary(raw)
			}
		}
		if err != nil {
			id, _ := rs.ID()
			s.log.WarnContext(ctx, "couchdb: list: dropping a row that cannot be read",
				"db", s.dbName, "id", id, "error", s.redact(err.Error()))
			continue
		}
		out = append(out, a)
	}
	if err := rs.Err(); err != nil {
		return nil, s.viewError(ctx, "list", ddoc, q.Namespace, err)
	}
	return out, nil
}

// Count returns the number of activations that match q, minus q.Skip,
// floored at 0.
func (s *Store) Count(ctx context.Context, q store.Query, _ store.UserContext) (int, error) {
	if err := store.ValidateQuery(q); err != nil {
		return 0, err
	}
	if emptyRange(q) {
		return 0, ctx.Err()
	}
	ddoc, params := s.countParams(q)
	ctx, cancel := s.withTimeout(ctx)
	defer cancel()
	rs := s.db.Query(ctx, ddoc, ActivationsView, kivik.Params(params))
	defer rs.Close()
	n := 0
	if rs.Next() {
		if err := rs.ScanValue(&n); err != nil {
			return 0, fmt.Errorf("couchdb: count %q: unexpected reduce value: %w", q.Namespace, err)
		}
	}
	if err := rs.Err(); err != nil {
		return 0, s.viewError(ctx, "count", ddoc, q.Namespace, err)
	}
	return max(n-q.Skip, 0), nil
}

// viewError classifies a failed view query; a 404 there means the database
// or the design document is missing, not the activation.
func (s *Store) viewError(ctx context.Context, op, ddoc, namespace string, err error) error {
	if s.status(ctx, err) == http.StatusNotFound {
		return &opError{op: op, id: namespace, err: err, msg: fmt.Sprintf(
			"database %q or view %s/_view/%s is missing (New creates them; was the database deleted?): %s",
			s.dbName, ddoc, ActivationsView, s.redact(err.Error()))}
	}
	return s.classify(ctx, op, namespace, err)
}
