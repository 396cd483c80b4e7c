package elasticsearch

import (
	"errors"
	"net/url"
	"strconv"
	"strings"

	"github.com/go-whisk/activationstore/store"
)

// TransientError reports a failure that may pass if the operation is
// retried: the server answered 429 or 5xx, did not answer in time, or could
// not be reached. Nothing can be assumed about whether a write took
// effect; retrying a Store is safe, since a repeated record meets
// store.ErrConflict. Match it with errors.As or [IsTransient].
type TransientError struct {
	Op         string // "store", "get", "delete", "list", "count", "store batch", …
	ID         string // the document id or index concerned
	StatusCode int    // the HTTP status; 0 when no response came
	Err        error  // the cause; errors.Is(err, context.DeadlineExceeded) holds for timeouts
	msg        string // the cause's text, credentials removed
}

func (e *TransientError) Error() string {
	var b strings.Builder
	b.WriteString("elasticsearch: ")
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

// Transient reports true, so that callers in other packages recognise the
// error through interface{ Transient() bool }.
func (e *TransientError) Transient() bool { return true }

// IsTransient reports whether err, or an error it wraps, is a *TransientError.
func IsTransient(err error) bool {
	var te *TransientError
	return errors.As(err, &te)
}

// opError is a permanent failure: a 4xx other than 404/409/429, or an
// unexpected reply. rejected marks a document the server refused for what
// it is (a mapping conflict, too large): it matches store.ErrInvalid, so a
// persister dead-letters it instead of stalling its partition.
type opError struct {
	op, id   string
	status   int
	msg      string
	rejected bool
}

func (e *opError) Is(target error) bool { return e.rejected && target == store.ErrInvalid }

func (e *opError) Error() string {
	s := "elasticsearch: " + e.op
	if e.id != "" {
		s += " " + strconv.Quote(e.id)
	}
	if e.status != 0 {
		s += " (HTTP " + strconv.Itoa(e.status) + ")"
	}
	return s + ": " + e.msg
}

// redactor returns a function that removes the password and userinfo
// from a text.
func redactor(user, password string) func(string) string {
	var pairs []string
	if user != "" || password != "" {
		ui := url.UserPassword(user, password).String()
		pairs = append(pairs, ui+"@", "xxxxx@")
	}
	if len(password) >= 4 {
		pairs = append(pairs, password, "xxxxx")
		if esc := url.QueryEscape(password); esc != password {
			pairs = append(pairs, esc, "xxxxx")
		}
		if esc := url.PathEscape(password); esc != password {
			pairs = append(pairs, esc, "xxxxx")
		}
	}
	if len(pairs) == 0 {
		return func(s string) string { return s }
	}
	return strings.NewReplacer(pairs...).Replace
}
