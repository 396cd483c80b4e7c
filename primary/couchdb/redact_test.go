package couchdb

import (
	"net/url"
	"strings"
	"testing"
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
