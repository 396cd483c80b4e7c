package searchtest

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/pem"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"testing"
)

// proxyUser is the Basic auth user of WithBasicAuth; the password is
// random per proxy.
const proxyUser = "searchtest"

// newProxy puts a reverse proxy in front of backend that serves HTTPS (tls)
// and/or requires Basic auth (auth), closed when the test ends. It speaks
// to backend with backend's own credentials and CA.
func newProxy(t testing.TB, backend *Server, useTLS, auth bool) *Server {
	t.Helper()
	target, err := url.Parse(backend.url)
	if err != nil {
		t.Fatalf("searchtest: %v", err)
	}
	rp := httputil.NewSingleHostReverseProxy(target)
	rp.Transport = backend.client.Transport // adds the backend's credentials
	rp.ErrorLog = log.New(io.Discard, "", 0)
	s := &Server{version: backend.version, external: backend.external, backend: backend}
	if auth {
		s.user, s.password = proxyUser, rand.Text()
	}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if auth {
			u, p, ok := r.BasicAuth()
			if !ok || subtle.ConstantTimeCompare([]byte(u+"\x00"+p), []byte(s.user+"\x00"+s.password)) != 1 {
				// What a secured Elasticsearch answers.
				w.Header().Set("WWW-Authenticate", `Basic realm="security" charset="UTF-8"`)
				w.Header().Set("Content-Type", "application/json; charset=UTF-8")
				w.WriteHeader(http.StatusUnauthorized)
				_, _ = io.WriteString(w, `{"error":{"root_cause":[{"type":"security_exception","reason":"missing authentication credentials for REST request"}],"type":"security_exception","reason":"missing authentication credentials for REST request"},"status":401}`)
				return
			}
		}
		r.Header.Del("Authorization")
		rp.ServeHTTP(w, r)
	})
	srv := httptest.NewUnstartedServer(h)
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // handshakes refused by tests of a wrong CA
	if useTLS {
		srv.StartTLS()
		s.caPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
		s.caFile = filepath.Join(t.TempDir(), "ca.pem")
		if err := os.WriteFile(s.caFile, s.caPEM, 0o644); err != nil {
			t.Fatalf("searchtest: %v", err)
		}
	} else {
		srv.Start()
	}
	t.Cleanup(srv.Close)
	s.url = srv.URL
	if s.client, err = newClient(s.caPEM, s.user, s.password); err != nil {
		t.Fatalf("searchtest: %v", err)
	}
	return s
}
