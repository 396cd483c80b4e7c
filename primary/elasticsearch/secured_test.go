package elasticsearch_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/go-whisk/activationstore/internal/activationtest"
	"github.com/go-whisk/activationstore/internal/searchtest"
	"github.com/go-whisk/activationstore/primary/elasticsearch"
	"github.com/go-whisk/activationstore/store"
)

// Over HTTPS with Basic auth (the harness's proxy in front of the server):
// WithCAFile trusts the server, the URL's credentials pass, and neither a
// wrong password nor an untrusted certificate shows the password in the
// error.
func TestTLSAndBasicAuth(t *testing.T) {
	srv := searchtest.Start(t, searchtest.WithTLS(), searchtest.WithBasicAuth())
	withUser := func(password string) string {
		return strings.Replace(srv.URL(), "://", "://"+srv.Username()+":"+password+"@", 1)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	pattern := elasticsearch.WithIndexPattern(srv.IndexPrefix(t) + "%s")

	s, err := elasticsearch.New(ctx, withUser(srv.Password()), pattern, elasticsearch.WithCAFile(srv.CAFile()))
	require.NoError(t, err, "New over TLS with the CA file and the right password")
	defer s.Close()
	a := activationtest.New("guest")
	_, err = s.Store(ctx, a, store.UserContext{})
	require.NoError(t, err)
	got, err := s.Get(ctx, a.Namespace, a.ActivationID, store.UserContext{})
	require.NoError(t, err)
	assert.Equal(t, a.ActivationID, got.ActivationID)

	const wrong = "not-the-password-4711"
	_, err = elasticsearch.New(ctx, withUser(wrong), pattern, elasticsearch.WithCAFile(srv.CAFile()))
	require.Error(t, err, "a wrong password is refused")
	assert.NotContains(t, err.Error(), wrong, "no password in the error")

	_, err = elasticsearch.New(ctx, withUser(srv.Password()), pattern)
	require.Error(t, err, "a certificate no configured CA signed is refused")
	assert.NotContains(t, err.Error(), srv.Password(), "no password in the error")
}
