package elasticsearch

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"

	"github.com/go-whisk/activationstore/codec"
	"github.com/go-whisk/activationstore/store"
)

// bulkCreate is the _bulk action line that creates document id in index,
// newline included. Servers before 7 need the mapping type.
func bulkCreate(index, id string, typed bool) ([]byte, error) {
	type meta struct {
		Index string `json:"_index"`
		Type  string `json:"_type,omitempty"`
		ID    string `json:"_id"`
	}
	m := meta{Index: index, ID: id}
	if typed {
		m.Type = "_doc"
	}
	b, err := json.Marshal(struct {
		Create meta `json:"create"`
	}{m})
	return append(b, '\n'), err
}

// pending is one encoded record of a batch.
type pending struct {
	idx    int
	id     string
	action []byte // the _bulk action line, newline included
	body   []byte // the document, newline included
}

// StoreBatch stores as with _bulk "create" actions, one request per batch
// (split at WithBatchLimits), as OpenWhisk's batcher does with "index"
// actions. Each record has its own result: nil when stored (2xx),
// store.ErrConflict when its document exists (create never overwrites),
// store.ErrInvalid when it is malformed (not sent) or the server refused it
// (a 400: a mapping conflict in an index of dynamic mapping, …), a
// *TransientError when the server answered 429 or 5xx for it or its
// request failed. The error is non-nil only when no request succeeded.
func (s *Store) StoreBatch(ctx context.Context, as []*store.Activation, _ store.UserContext) ([]store.BatchResult, error) {
	results := make([]store.BatchResult, len(as))
	updated := s.cfg.now()
	items := make([]pending, 0, len(as))
	for i, a := range as {
		if err := store.ValidateActivation(a); err != nil {
			results[i].Err = err
			continue
		}
		index, err := s.indexName(a.Namespace)
		if err != nil {
			results[i].Err = err
			continue
		}
		body, err := codec.MarshalElasticsearchDocument(a, updated)
		if err != nil {
			results[i].Err = err
			continue
		}
		id := a.DocID()
		results[i].DocInfo.ID = id
		action, err := bulkCreate(index, id, s.server.typed())
		if err != nil {
			results[i].Err = err
			continue
		}
		items = append(items, pending{idx: i, id: id, action: action, body: append(body, '\n')})
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

// chunks splits items at the batch limits; a document larger than the
// byte limit travels alone.
func (s *Store) chunks(items []pending) func(yield func([]pending) bool) {
	return func(yield func([]pending) bool) {
		start, size := 0, 0
		for i, p := range items {
			n := len(p.action) + len(p.body)
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

// bulkReply is the reply of _bulk.
type bulkReply struct {
	Errors bool                         `json:"errors"`
	Items  []map[string]bulkItemOutcome `json:"items"`
}

type bulkItemOutcome struct {
	ID     string       `json:"_id"`
	Status int          `json:"status"`
	Error  *serverError `json:"error"`
}

// bulk sends one _bulk request and records each document's outcome.
func (s *Store) bulk(ctx context.Context, chunk []pending, results []store.BatchResult) error {
	n := 0
	for _, p := range chunk {
		n += len(p.action) + len(p.body)
	}
	body := make([]byte, 0, n)
	for _, p := range chunk {
		body = append(body, p.action...)
		body = append(body, p.body...)
	}
	what := strconv.Itoa(len(chunk)) + " documents"
	status, reply, err := s.do(ctx, http.MethodPost, "/_bulk", url.Values{}, body, "application/x-ndjson")
	if err != nil {
		return s.classify("store batch", what, 0, nil, err)
	}
	if status == http.StatusRequestEntityTooLarge {
		if len(chunk) == 1 {
			results[chunk[0].idx].Err = &opError{op: "store", id: chunk[0].id, status: status, rejected: true,
				msg: "the server refused the document as too large (http.max_content_length)"}
			return nil
		}
		// The request, not a document, is too large: halve it.
		half := len(chunk) / 2
		if err := s.bulk(ctx, chunk[:half], results); err != nil {
			return err
		}
		return s.bulk(ctx, chunk[half:], results)
	}
	if status != http.StatusOK {
		return s.classify("store batch", what, status, reply, nil)
	}
	var r bulkReply
	if err := json.Unmarshal(reply, &r); err != nil {
		return &opError{op: "store batch", msg: "unreadable _bulk reply: " + err.Error()}
	}
	if len(r.Items) != len(chunk) {
		return &opError{op: "store batch", msg: fmt.Sprintf("_bulk answered %d items for %d documents", len(r.Items), len(chunk))}
	}
	for i, item := range r.Items {
		p := chunk[i]
		out := &results[p.idx]
		var o bulkItemOutcome
		for _, v := range item {
			o = v
		}
		var msg string
		if o.Error != nil {
			msg = s.redact(o.Error.Type + ": " + o.Error.Reason)
		}
		switch {
		case o.ID != p.id:
			out.Err = &TransientError{Op: "store", ID: p.id, Err: fmt.Errorf("misaligned _bulk item"),
				msg: fmt.Sprintf("_bulk answered for %q at its place: outcome unknown", o.ID)}
		case o.Status >= 200 && o.Status < 300:
		case o.Status == http.StatusConflict:
			out.Err = store.ConflictError(p.id)
		case o.Status == http.StatusTooManyRequests || o.Status >= 500:
			out.Err = &TransientError{Op: "store", ID: p.id, StatusCode: o.Status, Err: fmt.Errorf("HTTP %d", o.Status), msg: msg}
		case o.Status == http.StatusBadRequest || o.Status == http.StatusRequestEntityTooLarge:
			// Refused for what it is: permanent, as OpenWhisk's PutException.
			out.Err = &opError{op: "store", id: p.id, status: o.Status, msg: "rejected by the server: " + msg, rejected: true}
		default:
			// 403 (a cluster block: disk full, read-only index), 404
			// (automatic index creation off): retrying may pass once an
			// operator acts; never dead-letter for those.
			out.Err = &TransientError{Op: "store", ID: p.id, StatusCode: o.Status, Err: fmt.Errorf("HTTP %d", o.Status), msg: msg}
		}
	}
	return nil
}
