package couchdb

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/go-kivik/kivik/v4"

	"github.com/go-whisk/activationstore/store"
)

// ErrNotActivation is returned by Get when the document with the requested
// id is not an activation (its entityType names another kind of entity).
var ErrNotActivation = errors.New("couchdb: document is not an activation")

// TransientError reports a failure that may pass if the operation is
// retried: the server answered 5xx, did not answer in time, or could not be
// reached. Nothing can be assumed about whether a write took effect;
// retrying a Store is safe, since a repeated record meets ErrConflict.
// Match it with errors.As or [IsTransient].
type TransientError struct {
	Op         string // "store", "get", "delete", "list", "count", "store batch", "create database", …
	ID         string // the document id or database concerned
	StatusCode int    // the HTTP status; 0 when no response came
	Err        error  // the cause; errors.Is(err, context.DeadlineExceeded) holds for timeouts
	msg        string // the cause's text, credentials removed
}

func (e *TransientError) Error() string {
	var b strings.Builder
	b.WriteString("couchdb: ")
	b.WriteString(e.Op)
	if e.ID != "" {
		b.WriteString(" ")
		b.WriteString(strconv.Quote(e.ID))
	}
	b.WriteString(": transient failure")
	if e.StatusCode != 0 {
		b.WriteString(" (HTTP ")
		b.WriteString(strconv.Itoa(e.StatusCode))
		b.WriteString(")")
	}
	b.WriteString(", retry later: ")
	b.WriteString(e.msg)
	return b.String()
}

func (e *TransientError) Unwrap() error { return e.Err }

// Transient reports true, so that callers in other packages can recognise
// the error through interface{ Transient() bool } without importing this one.
func (e *TransientError) Transient() bool { return true }

// IsTransient reports whether err, or an error it wraps, is a *TransientError.
func IsTransient(err error) bool {
	var te *TransientError
	return errors.As(err, &te)
}

// opError is a permanent failure of an operation: a 4xx other than 404/409,
// or an unexpected reply. Its text is free of credentials.
type opError struct {
	op, id string
	msg    string
	err    error
	// rejected marks a document the server refused for what it is (too
	// large, refused by a validation function): retrying cannot help, so it
	// matches store.ErrInvalid and a persister dead-letters it instead of
	// stalling its partition.
	rejected bool
}

// Is makes a rejected document match store.ErrInvalid.
func (e *opError) Is(target error) bool { return e.rejected && target == store.ErrInvalid }

func (e *opError) Error() string {
	if e.id == "" {
		return "couchdb: " + e.op + ": " + e.msg
	}
	return "couchdb: " + e.op + " " + strconv.Quote(e.id) + ": " + e.msg
}

func (e *opError) Unwrap() error { return e.err }

// classify turns a kivik error into this package's errors: 404 into
// store.ErrNotFound, 409 into store.ErrConflict (wrapped with the document
// id), 5xx and network failures into *TransientError, the rest into a
// permanent error. Every text goes through s.redact.
func (s *Store) classify(ctx context.Context, op, id string, err error) error {
	if err == nil {
		return nil
	}
	status := s.status(ctx, err)
	switch {
	case status == http.StatusNotFound && (op == "store" || op == "store batch"):
		return &opError{op: op, id: id, err: err, msg: fmt.Sprintf(
			"database %q does not exist (deleted after New?): %s", s.dbName, s.redact(err.Error()))}
	case status == http.StatusRequestEntityTooLarge:
		return &opError{op: op, id: id, err: err, rejected: true, msg: "the server refused the document as too large " +
			"(CouchDB's [couchdb] max_document_size and [chttpd] max_http_request_size bound it): " + s.redact(err.Error())}
	case status == http.StatusUnauthorized || status == http.StatusForbidden:
		return &opError{op: op, id: id, err: err, msg: "not authorized: check the credentials in the URL and the " +
			"database's _security members: " + s.redact(err.Error())}
	case status == http.StatusNotFound:
		return fmt.Errorf("%w: %s", store.ErrNotFound, strconv.Quote(id))
	case status == http.StatusConflict:
		return store.ConflictError(id)
	}
	msg := s.redact(err.Error())
	// A request that got no response (refused, reset, timed out) carries
	// the *url.Error of net/http; kivik labels it 502.
	var ue *url.Error
	noResponse := errors.As(err, &ue)
	if ctxErr := ctx.Err(); ctxErr != nil && !errors.Is(err, ctxErr) {
		err = fmt.Errorf("%w (%w)", ctxErr, err)
	}
	if noResponse || status >= 500 || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		code := status
		if noResponse {
			code = 0
		}
		return &TransientError{Op: op, ID: id, StatusCode: code, Err: err, msg: msg}
	}
	return &opError{op: op, id: id, msg: msg, err: err}
}

// status is err's HTTP status, with a 500 turned into the 404 it stands
// for when the database is missing (HEAD /{db} answers 404). A CouchDB
// cluster answers 500 while it drops a deleted database's shards ("No DB
// shards could be opened.", or a per-document internal_server_error from
// _bulk_docs): that is a missing database, not a failure worth retrying.
// Should the check fail, the 500 stays transient.
func (s *Store) status(ctx context.Context, err error) int {
	status := kivik.HTTPStatus(err)
	if status != http.StatusInternalServerError || ctx.Err() != nil {
		return status
	}
	if exists, xerr := s.client.DBExists(ctx, s.dbName); xerr == nil && !exists {
		return http.StatusNotFound
	}
	return status
}
