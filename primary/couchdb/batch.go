package couchdb

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"

	"github.com/go-kivik/kivik/v4/couchdb/chttp"

	"github.com/go-whisk/activationstore/codec"
	"github.com/go-whisk/activationstore/store"
)

// pending is one encoded record of a batch.
type pending struct {
	idx  int
	id   string
	body json.RawMessage
}

// StoreBatch stores as with _bulk_docs, as OpenWhisk's activation store
// does: one request per batch, split at the batch limits (WithBatchLimits).
// Each record has its own result: store.ErrConflict when its document
// exists (the others are stored all the same), store.ErrInvalid when it is
// malformed (it is not sent), or a *TransientError when its request failed.
// The error is non-nil only when no request succeeded, so that nothing was
// stored.
func (s *Store) StoreBatch(ctx context.Context, as []*store.Activation, _ store.UserContext) ([]store.BatchResult, error) {
	results := make([]store.BatchResult, len(as))
	updated := s.cfg.now()
	items := make([]pending, 0, len(as))
	for i, a := range as {
		if err := store.ValidateActivation(a); err != nil {
			results[i].Err = err
			continue
		}
		body, err := codec.MarshalDocument(a, updated)
		if err != nil {
			results[i].Err = err
			continue
		}
		id := a.DocID()
		results[i].DocInfo.ID = id
		items = append(items, pending{idx: i, id: id, body: body})
	}

	var firstErr error
	sent, failed := 0, 0
	for chunk := range s.chunks(items) {
		sent++
		if err := s.bulk(ctx, chunk, results); err != nil {
			failed++
			if firstErr == nil {
				firstErr = err
			}
			for _, p := range chunk {
				results[p.idx].Err = err
			}
		}
	}
	if sent > 0 && failed == sent {
		return nil, firstErr
	}
	return results, nil
}

// chunks splits items at the batch limits; a document larger than the byte
// limit travels alone.
func (s *Store) chunks(items []pending) func(yield func([]pending) bool) {
	return func(yield func([]pending) bool) {
		start, size := 0, 0
		for i, p := range items {
			n := len(p.body) + 1 // and a comma
			if i > start && (i-start >= s.cfg.batchDocs || size+n > s.cfg.batchBytes) {
				if !yield(items[start:i]) {
					return
				}
				start, size = i, 0
			}
			size += n
		}
		if start < len(items) {
			yield(items[start:])
		}
	}
}

// bulk sends one _bulk_docs request and records each document's outcome in
// results. The error is the request's, when it failed as a whole.
func (s *Store) bulk(ctx context.Context, chunk []pending, results []store.BatchResult) error {
	ctx, cancel := s.withTimeout(ctx)
	defer cancel()
	res, err := s.postBulkDocs(ctx, chunk)
	if err != nil {
		return s.classify(ctx, "store batch", fmt.Sprintf("%d documents", len(chunk)), err)
	}
	if len(res) != len(chunk) {
		return &opError{op: "store batch", msg: fmt.Sprintf("_bulk_docs answered %d results for %d documents", len(res), len(chunk))}
	}
	for i, r := range res {
		p := chunk[i]
		out := &results[p.idx]
		switch {
		case r.ID != p.id:
			out.Err = &opError{op: "store", id: p.id, msg: fmt.Sprintf("_bulk_docs answered for %q at its place: outcome unknown", r.ID)}
		case r.Error == "":
			out.DocInfo.Rev = r.Rev
		case r.Error == "conflict":
			out.Err = store.ConflictError(p.id)
		default:
			// Rejected by the server (too large, a validate_doc_update
			// function): permanent, as OpenWhisk's PutException.
			out.Err = &opError{op: "store", id: p.id, msg: "rejected by _bulk_docs: " + s.redact(r.Error+": "+r.Reason), rejected: true}
		}
	}
	return nil
}

// bulkResult is one document's outcome in a _bulk_docs reply.
type bulkResult struct {
	ID     string `json:"id"`
	Rev    string `json:"rev"`
	Error  string `json:"error"`
	Reason string `json:"reason"`
}

// postBulkDocs sends the encoded documents of chunk in one _bulk_docs
// request, as they are.
func (s *Store) postBulkDocs(ctx context.Context, chunk []pending) ([]bulkResult, error) {
	n := len(`{"docs":[]}`) + len(chunk)
	for _, p := range chunk {
		n += len(p.body)
	}
	body := make([]byte, 0, n)
	body = append(body, `{"docs":[`...)
	for i, p := range chunk {
		if i > 0 {
			body = append(body, ',')
		}
		body = append(body, p.body...)
	}
	body = append(body, "]}"...)
	resp, err := s.raw.DoReq(ctx, http.MethodPost, "/"+url.PathEscape(s.dbName)+"/_bulk_docs", &chttp.Options{
		GetBody:       func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil },
		ContentLength: int64(len(body)),
	})
	if err != nil {
		return nil, err
	}
	defer chttp.CloseBody(resp.Body)
	// 417: some documents were rejected; each says why in the reply.
	if resp.StatusCode != http.StatusCreated && resp.StatusCode != http.StatusExpectationFailed {
		if err := chttp.ResponseError(resp); err != nil {
			return nil, err
		}
	}
	var res []bulkResult
	if err := json.NewDecoder(resp.Body).Decode(&res); err != nil {
		return nil, fmt.Errorf("couchdb: _bulk_docs reply: %w", err)
	}
	return res, nil
}
