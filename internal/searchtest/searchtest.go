package searchtest

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-whisk/activationstore/internal/childproc"
)

// Version names a server release: "opensearch-2.19.6",
// "elasticsearch-7.10.2".
type Version string

// The versions the tests pin.
const (
	OpenSearch2    Version = "opensearch-2.19.6"
	Elasticsearch7 Version = "elasticsearch-7.10.2"
	Elasticsearch6 Version = "elasticsearch-6.8.23"

	// DefaultVersion is what Start runs unless SEARCHTEST_VERSION names
	// another.
	DefaultVersion = OpenSearch2
)

// Pinned lists the pinned versions, newest first.
func Pinned() []Version { return []Version{OpenSearch2, Elasticsearch7, Elasticsearch6} }

// Environment variables.
const (
	// EnvURL names an existing server instead of starting one.
	EnvURL = "ELASTICSEARCH_URL"
	// EnvCAFile names the PEM CA file of an https EnvURL.
	EnvCAFile = "ELASTICSEARCH_CA_FILE"
	// EnvVersion selects the version Start runs.
	EnvVersion = "SEARCHTEST_VERSION"
	// EnvJavaHome selects the Java installation (default: java on PATH).
	EnvJavaHome = "SEARCHTEST_JAVA_HOME"
	// EnvHeap sets the servers' JVM heap (default 256m).
	EnvHeap = "SEARCHTEST_HEAP"
	// EnvJavaOpts adds JVM options (space-separated) after searchtest's own.
	EnvJavaOpts = "SEARCHTEST_JAVA_OPTS"
)

// defaultHeap is enough for the tests' volumes, and small enough for
// several servers on a laptop.
const defaultHeap = "256m"

var versionPattern = regexp.MustCompile(`^(opensearch|elasticsearch)-([0-9]+)\.[0-9]+\.[0-9]+$`)

// Distribution is "opensearch" or "elasticsearch".
func (v Version) Distribution() string { d, _, _ := strings.Cut(string(v), "-"); return d }

// Number is the release number: "2.19.6".
func (v Version) Number() string { _, n, _ := strings.Cut(string(v), "-"); return n }

// Major is the major release number, 0 when v is malformed.
func (v Version) Major() int {
	m := versionPattern.FindStringSubmatch(string(v))
	if m == nil {
		return 0
	}
	n, _ := strconv.Atoi(m[2])
	return n
}

func (v Version) check() error {
	if !versionPattern.MatchString(string(v)) {
		return fmt.Errorf("searchtest: version %q: want opensearch-X.Y.Z or elasticsearch-X.Y.Z, such as %s", v, DefaultVersion)
	}
	return nil
}

// Kind says what serves the tests: a server of a distribution that this
// package starts, or ELASTICSEARCH_URL's.
type Kind string

const (
	// OpenSearch is an OpenSearch server started by this package.
	OpenSearch Kind = "opensearch"
	// Elasticsearch is an Elasticsearch server started by this package.
	Elasticsearch Kind = "elasticsearch"
	// External is the server ELASTICSEARCH_URL names.
	External Kind = "external"
)

// Selected is the kind of server Start gives, from the environment:
// External when ELASTICSEARCH_URL is set, else the distribution of
// SelectedVersion.
func Selected() (Kind, error) {
	if os.Getenv(EnvURL) != "" {
		return External, nil
	}
	v, err := SelectedVersion()
	if err != nil {
		return "", err
	}
	return Kind(v.Distribution()), nil
}

// SelectedVersion is the version Start runs when ELASTICSEARCH_URL is
// unset: SEARCHTEST_VERSION, or DefaultVersion.
func SelectedVersion() (Version, error) {
	v := DefaultVersion
	if s := os.Getenv(EnvVersion); s != "" {
		v = Version(s)
	}
	return v, v.check()
}

func heap() string {
	if h := os.Getenv(EnvHeap); h != "" {
		return h
	}
	return defaultHeap
}

// Option configures Start or StartCluster.
type Option func(*options)

type options struct {
	version   Version
	tls, auth bool
}

// WithVersion runs version instead of SelectedVersion(). Under ELASTICSEARCH_URL,
// Start gives the external server whatever its version (Server.Version
// says which).
func WithVersion(v Version) Option { return func(o *options) { o.version = v } }

// WithTLS serves HTTPS, through a proxy, with a certificate for 127.0.0.1
// signed by a test CA: Server.CAFile and Server.HTTPClient trust it.
func WithTLS() Option { return func(o *options) { o.tls = true } }

// WithBasicAuth requires HTTP Basic authentication, through a proxy, with
// a random password: Server.Username and Server.Password give it. A
// missing or wrong one gets 401 and a security_exception, as from a
// secured Elasticsearch.
func WithBasicAuth() Option { return func(o *options) { o.auth = true } }

func applyOptions(opts []Option) options {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	return o
}

// Server is a server as one test sees it.
type Server struct {
	url      string // without user information
	version  Version
	external bool
	user     string
	password string
	caPEM    []byte
	caFile   string
	node     *node // nil for an external server and for proxies
	backend  *Server
	client   *http.Client
}

// Start returns the test binary's shared server of the selected version
// (see the package documentation), or the external one, behind a proxy
// when the test asks for TLS or Basic auth. It fails the test when no
// server can be had.
func Start(t testing.TB, opts ...Option) *Server {
	t.Helper()
	o := applyOptions(opts)
	var s *Server
	var err error
	if u := os.Getenv(EnvURL); u != "" {
		s, err = sharedExternal(u)
	} else {
		v := o.version
		if v == "" {
			if v, err = SelectedVersion(); err != nil {
				t.Fatal(err)
			}
		}
		s, err = sharedServer(v)
	}
	if err != nil {
		t.Fatalf("searchtest: %v", err)
	}
	watchShared(t)
	if o.tls || o.auth {
		return newProxy(t, s, o.tls, o.auth)
	}
	return s
}

// URL is the server's base URL, without credentials.
func (s *Server) URL() string { return s.url }

// Version is the server's distribution and release.
func (s *Server) Version() Version { return s.version }

// External reports whether the server is ELASTICSEARCH_URL's.
func (s *Server) External() bool { return s.external }

// Username and Password are the Basic auth credentials, "" without.
func (s *Server) Username() string { return s.user }

// Password: see Username.
func (s *Server) Password() string { return s.password }

// CAFile is the path of the PEM file of the CA that signed the server's
// certificate, "" without TLS.
func (s *Server) CAFile() string { return s.caFile }

// CAPEM is the content of CAFile, nil without TLS.
func (s *Server) CAPEM() []byte { return s.caPEM }

// HTTPClient trusts the server's CA and sends its credentials.
func (s *Server) HTTPClient() *http.Client { return s.client }

// PID is the server's process id, 0 for an external or stopped one; for a
// proxy, its server's.
func (s *Server) PID() int {
	switch {
	case s.node != nil:
		return s.node.proc.Pid()
	case s.backend != nil:
		return s.backend.PID()
	}
	return 0
}

// RSS is the server JVM's resident set size in bytes (Linux), 0 when
// unknown.
func (s *Server) RSS() int64 {
	pid := s.PID()
	if pid == 0 {
		return 0
	}
	n, _ := childproc.RSS(pid)
	return n
}

// Logs is the path of the server's log file, "" for an external one.
func (s *Server) Logs() string {
	switch {
	case s.node != nil:
		return s.node.proc.Log
	case s.backend != nil:
		return s.backend.Logs()
	}
	return ""
}

func (s *Server) String() string {
	kind := "started by searchtest"
	if s.external {
		kind = "external"
	}
	return fmt.Sprintf("%s at %s (%s)", s.version, s.url, kind)
}

// Do sends a request to the server, with its credentials, and returns the
// status and body. A body is sent as JSON, or as NDJSON to _bulk.
func (s *Server) Do(ctx context.Context, method, path string, body []byte) (int, []byte, error) {
	var r io.Reader
	if body != nil {
		r = strings.NewReader(string(body))
	}
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimSuffix(s.url, "/")+"/"+strings.TrimPrefix(path, "/"), r)
	if err != nil {
		return 0, nil, err
	}
	if body != nil {
		ct := "application/json"
		if p, _, _ := strings.Cut(path, "?"); strings.HasSuffix(p, "/_bulk") {
			ct = "application/x-ndjson"
		}
		req.Header.Set("Content-Type", ct)
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

// MustDo is Do that fails the test on a transport error or a status
// outside 2xx.
func (s *Server) MustDo(t testing.TB, method, path string, body []byte) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	status, b, err := s.Do(ctx, method, path, body)
	if err != nil {
		t.Fatalf("searchtest: %s %s: %v", method, path, err)
	}
	if status/100 != 2 {
		t.Fatalf("searchtest: %s %s: status %d: %s", method, path, status, b)
	}
	return b
}

// IndexPrefix returns a prefix of index names unique to this test (and
// this call), lower case, ending in "-", such as
// "st-testlist-3f9a1c-". Indices and index templates named with it are
// deleted when the test ends, unless it failed: the shared server holds
// every test's indices, and its heap is small.
func (s *Server) IndexPrefix(t testing.TB) string {
	t.Helper()
	p := IndexPrefix(t)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("searchtest: keeping indices %s* on %s", p, s)
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		for _, path := range []string{
			"/" + p + "*?expand_wildcards=all&ignore_unavailable=true",
			"/_template/" + p + "*",
			"/_index_template/" + p + "*", // Elasticsearch 7.8+ and OpenSearch
		} {
			_, _, _ = s.Do(ctx, http.MethodDelete, path, nil)
		}
	})
	return p
}

var prefixSeq struct {
	sync.Mutex
	n int
}

var notIndexChar = regexp.MustCompile(`[^a-z0-9]+`)

// IndexPrefix returns a unique prefix of index names for t without
// registering any clean-up; Server.IndexPrefix is the usual choice.
func IndexPrefix(t testing.TB) string {
	name := strings.Trim(notIndexChar.ReplaceAllString(strings.ToLower(t.Name()), "-"), "-")
	if len(name) > 40 {
		name = strings.Trim(name[len(name)-40:], "-")
	}
	prefixSeq.Lock()
	prefixSeq.n++
	n := prefixSeq.n
	prefixSeq.Unlock()
	return fmt.Sprintf("st-%s-%s%d-", name, strings.ToLower(rand.Text()[:5]), n)
}

// sharedExternal is ELASTICSEARCH_URL's server, its version read once.
func sharedExternal(raw string) (*Server, error) {
	external.once.Do(func() { external.s, external.err = newExternal(raw) })
	return external.s, external.err
}

var external struct {
	once sync.Once
	s    *Server
	err  error
}

func newExternal(raw string) (*Server, error) {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("%s=%q: want http(s)://[user:password@]host:port", EnvURL, redactURL(raw))
	}
	s := &Server{external: true}
	if u.User != nil {
		s.user = u.User.Username()
		s.password, _ = u.User.Password()
		u.User = nil
	}
	s.url = strings.TrimSuffix(u.String(), "/")
	if f := os.Getenv(EnvCAFile); f != "" {
		if s.caPEM, err = os.ReadFile(f); err != nil {
			return nil, fmt.Errorf("%s: %w", EnvCAFile, err)
		}
		s.caFile = f
	}
	if s.client, err = newClient(s.caPEM, s.user, s.password); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if s.version, err = detectVersion(ctx, s); err != nil {
		return nil, fmt.Errorf("%s=%s: %w", EnvURL, s.url, err)
	}
	return s, nil
}

// detectVersion reads the distribution and release from GET /.
func detectVersion(ctx context.Context, s *Server) (Version, error) {
	status, body, err := s.Do(ctx, http.MethodGet, "/", nil)
	if err != nil {
		return "", fmt.Errorf("the server does not answer: %w", err)
	}
	if status != http.StatusOK {
		return "", fmt.Errorf("GET /: status %d: %s", status, body)
	}
	var root struct {
		Version struct {
			Distribution string `json:"distribution"`
			Number       string `json:"number"`
		} `json:"version"`
	}
	if err := json.Unmarshal(body, &root); err != nil || root.Version.Number == "" {
		return "", fmt.Errorf("GET / did not name a version: %s", body)
	}
	d := root.Version.Distribution
	if d == "" {
		d = "elasticsearch"
	}
	return Version(d + "-" + root.Version.Number), nil
}

// newClient is an HTTP client that trusts caPEM (when given) and sends
// Basic auth (when user is).
func newClient(caPEM []byte, user, password string) (*http.Client, error) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if caPEM != nil {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(caPEM) {
			return nil, errors.New("searchtest: no certificate in the CA PEM")
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	var rt http.RoundTripper = tr
	if user != "" {
		rt = basicAuth{tr, user, password}
	}
	return &http.Client{Transport: rt}, nil
}

type basicAuth struct {
	next           http.RoundTripper
	user, password string
}

func (b basicAuth) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.SetBasicAuth(b.user, b.password)
	return b.next.RoundTrip(r)
}

// redactURL hides a password in a URL.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable URL)"
	}
	return u.Redacted()
}
