package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const testPassword = "pw-s3cr3t-9f2c"

func envOf(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

// The Kafka security settings: SASL mechanisms with the password from the
// environment or a file, TLS with the system's CAs or a CA file; and
// settings that cannot work are refused at start, without the password in
// the message.
func TestParseKafkaSecurity(t *testing.T) {
	dir := t.TempDir()
	pwFile := filepath.Join(dir, "password")
	require.NoError(t, os.WriteFile(pwFile, []byte(testPassword+"\n"), 0o600))
	caFile := filepath.Join(dir, "ca.pem")
	require.NoError(t, os.WriteFile(caFile, testCAPEM(t), 0o600))
	notPEM := filepath.Join(dir, "not.pem")
	require.NoError(t, os.WriteFile(notPEM, []byte("not a certificate"), 0o600))
	base := map[string]string{"PERSISTER_BROKERS": "127.0.0.1:9092", "COUCHDB_URL": "http://127.0.0.1:5984"}
	with := func(kv ...string) map[string]string {
		m := map[string]string{}
		for k, v := range base {
			m[k] = v
		}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}

	for _, tc := range []struct {
		name      string
		env       map[string]string
		args      []string
		mechanism string // "": no SASL
		tls       bool
		customCA  bool
		err       string // substring of the error; "": none
	}{
		{name: "plaintext", env: base},
		{name: "SCRAM-SHA-512 from the environment", env: with("PERSISTER_SASL_MECHANISM", "SCRAM-SHA-512",
			"PERSISTER_SASL_USERNAME", "u", "PERSISTER_SASL_PASSWORD", testPassword), mechanism: "SCRAM-SHA-512"},
		{name: "scram-sha-256 by flags and password file", env: base, mechanism: "SCRAM-SHA-256",
			args: []string{"-sasl-mechanism", "scram-sha-256", "-sasl-username", "u", "-sasl-password-file", pwFile}},
		{name: "PLAIN", env: with("PERSISTER_SASL_MECHANISM", "PLAIN", "PERSISTER_SASL_USERNAME", "u",
			"PERSISTER_SASL_PASSWORD", testPassword), mechanism: "PLAIN"},
		{name: "TLS with the system's CAs", env: with("PERSISTER_TLS", "true"), tls: true},
		{name: "a CA file implies TLS", env: with("PERSISTER_TLS_CA_FILE", caFile), tls: true, customCA: true},
		{name: "unknown mechanism", env: with("PERSISTER_SASL_MECHANISM", "GSSAPI", "PERSISTER_SASL_USERNAME", "u",
			"PERSISTER_SASL_PASSWORD", testPassword), err: "want PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512"},
		{name: "mechanism without password", env: with("PERSISTER_SASL_MECHANISM", "SCRAM-SHA-512",
			"PERSISTER_SASL_USERNAME", "u"), err: "needs a user and a password"},
		{name: "password without mechanism", env: with("PERSISTER_SASL_PASSWORD", testPassword), err: "without a mechanism"},
		{name: "missing password file", env: base, args: []string{"-sasl-password-file", filepath.Join(dir, "absent")},
			err: "-sasl-password-file"},
		{name: "CA file without a certificate", env: with("PERSISTER_TLS_CA_FILE", notPEM), err: "no PEM certificate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := parse(tc.args, envOf(tc.env), io.Discard)
			if tc.err != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tc.err)
				assert.NotContains(t, err.Error(), testPassword)
				return
			}
			require.NoError(t, err)
			if tc.mechanism == "" {
				assert.Nil(t, s.mech)
			} else {
				require.NotNil(t, s.mech)
				assert.Equal(t, tc.mechanism, s.mech.Name())
				assert.Equal(t, testPassword, s.saslPassword, "the password file's trailing newline is not part of the password")
			}
			if !tc.tls {
				assert.Nil(t, s.tlsConfig)
				return
			}
			require.NotNil(t, s.tlsConfig)
			assert.Equal(t, tc.customCA, s.tlsConfig.RootCAs != nil, "RootCAs set only from a CA file")
		})
	}
}

// testCAPEM is a self-signed CA certificate.
func testCAPEM(t *testing.T) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// -couchdb takes the URLs of several nodes of one cluster; the log shows
// them without the password, and the readiness probe asks each node.
func TestParseCouchDBNodes(t *testing.T) {
	env := map[string]string{"PERSISTER_BROKERS": "127.0.0.1:9092",
		"COUCHDB_URL": "http://admin:" + testPassword + "@127.0.0.1:5984,http://127.0.0.1:5985, http://127.0.0.1:5986"}
	s, err := parse(nil, envOf(env), io.Discard)
	require.NoError(t, err)
	shown := redactedURL(s.couchURL)
	assert.Equal(t, "http://admin:xxxxx@127.0.0.1:5984,http://127.0.0.1:5985,http://127.0.0.1:5986", shown)
	p := newCouchProbe(s.couchURL, "whisk_local_activations")
	require.Len(t, p.urls, 3)
	for _, u := range p.urls {
		assert.Contains(t, u, "admin:"+testPassword+"@", "every node gets the first URL's credentials")
		assert.Contains(t, u, "/whisk_local_activations")
	}

	for _, bad := range []string{"127.0.0.1:5984", "http://a:1,ftp://b:2", "http://u:" + testPassword + "@127.0.0.1:1,http://v:q@127.0.0.1:2"} {
		env["COUCHDB_URL"] = bad
		_, err := parse(nil, envOf(env), io.Discard)
		require.Error(t, err, bad)
		assert.Contains(t, err.Error(), "-couchdb (COUCHDB_URL)")
		assert.NotContains(t, err.Error(), testPassword)
	}
}
