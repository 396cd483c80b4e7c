package couchdb

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/go-whisk/activationstore/store"
)

func TestRedactor(t *testing.T) {
	u, _ := url.Parse("http://ad%40min:p%40ss%3Aword@127.0.0.1:5984")
	pw, _ := u.User.Password()
	r := redactor(u.User.String(), pw)
	for _, in := range []string{
		`Put "http://ad%40min:p%40ss%3Aword@127.0.0.1:5984/db/x": EOF`,
		`auth ad@min:p@ss:word@127.0.0.1 failed`,
		`password p@ss:word echoed`,
		`escaped p%40ss%3Aword echoed`,
	} {
		out := r(in)
		if strings.Contains(out, "p@ss:word") || strings.Contains(out, "p%40ss%3Aword") {
			t.Errorf("redactor(%q) = %q", in, out)
		}
		if !strings.Contains(out, "xxxxx") {
			t.Errorf("redactor(%q) = %q: nothing replaced", in, out)
		}
	}
}

type statusError int

func (e statusError) Error() string   { return "server said " + http.StatusText(int(e)) }
func (e statusError) HTTPStatus() int { return int(e) }

// A document the server refuses for what it is matches store.ErrInvalid, so
// a persister dead-letters it rather than retrying it for ever; a server
// error stays transient.
func TestClassifyRejectedDocument(t *testing.T) {
	s := &Store{dbName: "db", redact: func(s string) string { return s }}
	ctx := context.Background()
	tooLarge := s.classify(ctx, "store", "ns/id", statusError(http.StatusRequestEntityTooLarge))
	if !errors.Is(tooLarge, store.ErrInvalid) {
		t.Errorf("413: %v does not match store.ErrInvalid", tooLarge)
	}
	if IsTransient(tooLarge) {
		t.Errorf("413: %v is transient", tooLarge)
	}
	unavailable := s.classify(ctx, "store", "ns/id", statusError(http.StatusServiceUnavailable))
	if errors.Is(unavailable, store.ErrInvalid) || !IsTransient(unavailable) {
		t.Errorf("503: %v, want transient and not invalid", unavailable)
	}
	unauthorized := s.classify(ctx, "store", "ns/id", statusError(http.StatusUnauthorized))
	if errors.Is(unauthorized, store.ErrInvalid) {
		t.Errorf("401: %v must not dead-letter documents: the credentials are wrong, not the document", unauthorized)
	}
}
