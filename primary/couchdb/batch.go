package couchdb

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

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
	items := make([]pending, 0, len(as))
	for i, a := range as {
		if err := store.ValidateActivation(a); err != nil {
			results[i].Err = err
			continue
		}
		body, err := codec.MarshalDocument(a, updatedOf(a))
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
	var accepted map[string]string
	for i, r := range res {
		p := chunk[i]
		out := &results[p.idx]
		switch {
		case r.ID != p.id:
			out.Err = &opError{op: "store", id: p.id, msg: fmt.Sprintf("_bulk_docs answered for %q at its place: outcome unknown", r.ID)}
		case r.Error == "":
			out.DocInfo.Rev = r.Rev
			if r.Accepted {
				if accepted == nil {
					accepted = map[string]string{}
				}
				accepted[p.id] = r.Rev
			}
		case r.Error == "conflict":
			out.Err = store.ConflictError(p.id)
		default:
			// Rejected by the server (too large, a validate_doc_update
			// function): permanent, as OpenWhisk's PutException.
			out.Err = &opError{op: "store", id: p.id, msg: "rejected by _bulk_docs: " + s.redact(r.Error+": "+r.Reason), rejected: true}
		}
	}
	if accepted == nil {
		return nil
	}
	dup, err := s.settleAccepted(ctx, accepted)
	for _, p := range chunk {
		if _, ok := accepted[p.id]; !ok {
			continue
		}
		out := &results[p.idx]
		switch {
		case err != nil:
			out.Err = s.unsettled(ctx, "store batch", p.id, err)
		case dup[p.id] != nil:
			out.DocInfo.Rev, out.Err = "", dup[p.id]
		}
	}
	return nil
}

// unsettled is the error of a write answered 202 whose document could not
// be checked for conflicting revisions: transient, so that the write is
// retried (a retry writes the same bytes, hence the same revision).
func (s *Store) unsettled(ctx context.Context, op, id string, err error) error {
	var te *TransientError
	if errors.As(err, &te) {
		return err
	}
	if cerr := s.classify(ctx, op, id, err); IsTransient(cerr) {
		return cerr
	}
	return &TransientError{Op: op, ID: id, Err: err, msg: "written to fewer copies than the write quorum, " +
		"and checking it for conflicting revisions failed: " + s.redact(err.Error())}
}

// bulkResult is one document's outcome in a _bulk_docs reply.
type bulkResult struct {
	ID     string `json:"id"`
	Rev    string `json:"rev"`
	Error  string `json:"error"`
	Reason string `json:"reason"`
	// Accepted: stored on fewer copies than the write quorum (HTTP 202).
	Accepted bool `json:"accepted"`
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
	return s.postBulk(ctx, body)
}

// postBulk sends one _bulk_docs request with the write quorum.
func (s *Store) postBulk(ctx context.Context, body []byte) ([]bulkResult, error) {
	resp, err := s.raw.DoReq(ctx, http.MethodPost, s.dbPath()+"/_bulk_docs"+s.writeQuery(), &chttp.Options{
		GetBody:       bodyFunc(body),
		ContentLength: int64(len(body)),
	})
	if err != nil {
		return nil, err
	}
	defer chttp.CloseBody(resp.Body)
	// 202: some documents reached fewer copies than the write quorum; 417:
	// some were rejected. Each says so in the reply.
	if resp.StatusCode != http.StatusCreated && resp.StatusCode != http.StatusAccepted && resp.StatusCode != http.StatusExpectationFailed {
		if err := chttp.ResponseError(resp); err != nil {
			return nil, err
		}
	}
	res, err := readBulkReply(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("couchdb: _bulk_docs reply: %w", err)
	}
	return res, nil
}

// bodyFunc gives a request body that can be read again on a retry.
func bodyFunc(b []byte) func() (io.ReadCloser, error) {
	return func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }
}

// updatedOf is the "updated" time of a's document: when the activation
// ended, or when it started if it has no later end (a trigger's end is
// epoch 0). OpenWhisk stamps the time of the
// write instead; a stamp taken from the record makes every write of one
// activation — a retry after a lost reply, a redelivery to another
// persister after a crash or rebalance, a second publication of the same
// activation, a direct Store besides the persister's — byte-identical, so
// CouchDB computes the same revision on every copy and no conflicting
// revision forms on a cluster. (A record's Kafka timestamp would differ
// between two publications.) Nothing reads "updated" of an activation:
// OpenWhisk's views and log cleanup key on start.
func updatedOf(a *store.Activation) time.Time {
	if !a.End.IsZero() && a.End.After(a.Start) {
		return a.End
	}
	return a.Start
}
