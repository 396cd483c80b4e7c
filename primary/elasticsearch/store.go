package elasticsearch

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/opensearch-project/opensearch-go/v4"

	"github.com/go-whisk/activationstore/codec"
	"github.com/go-whisk/activationstore/store"
)

// Store keeps activations in Elasticsearch or OpenSearch indices, in
// OpenWhisk's ElasticSearchActivationStore form. It is safe for concurrent use.
type Store struct {
	client  *opensearch.Client
	cfg     config
	pattern string
	log     *slog.Logger
	redact  func(string) string
	server  Server
	// ownTransport is closed with the store when the store made it.
	ownTransport *http.Transport
}

var (
	_ store.Store          = (*Store)(nil)
	_ store.BatchStorer    = (*Store)(nil)
	_ store.DurationStater = (*Store)(nil)
	_ store.FilterViewer   = (*Store)(nil)
)

// Server describes the server New found behind the URL (GET /).
type Server struct {
	Distribution string // "elasticsearch" or "opensearch"
	Version      string // e.g. "6.8.23", "7.10.2", "2.19.6"
	Major        int
}

// typed reports whether the server needs "_type":"_doc" in _bulk action
// lines and mappings nested under the type (Elasticsearch 6).
func (v Server) typed() bool { return v.Distribution == "elasticsearch" && v.Major < 7 }

// New connects to the server at rawURL ("http://user:secret@127.0.0.1:9200";
// several nodes of one cluster separated by commas; credentials in the URL
// are sent as Basic auth and never appear in errors or logs), reads its
// version once (GET /), and installs an index template for the index
// pattern (WithIndexTemplate). Indices are created by the server on the
// first write of a namespace. ctx bounds this set-up.
func New(ctx context.Context, rawURL string, opts ...Option) (*Store, error) {
	cfg := defaults()
	for _, o := range opts {
		o(&cfg)
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	var addrs []string
	user, password := cfg.username, cfg.password
	for part := range strings.SplitSeq(rawURL, ",") {
		u, err := url.Parse(strings.TrimSpace(part))
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			// url.Parse's error repeats the URL, password included: not shown.
			return nil, errors.New(`elasticsearch: URL must look like "http[s]://[user:password@]host:port[/prefix]", several separated by commas`)
		}
		if u.User != nil {
			user = u.User.Username()
			password, _ = u.User.Password()
			u.User = nil
		}
		addrs = append(addrs, strings.TrimSuffix(u.String(), "/"))
	}
	s := &Store{cfg: cfg, pattern: strings.TrimLeft(cfg.pattern, "/"), redact: redactor(user, password), log: cfg.logger}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	rt := cfg.transport
	if rt == nil {
		t := defaultTransport()
		if cfg.caCert != nil {
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(cfg.caCert) {
				return nil, fmt.Errorf("elasticsearch: WithCAFile(%q): no PEM certificate found", cfg.caFile)
			}
			t.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
		}
		s.ownTransport = t
		rt = t
	}
	noDiscovery := false
	client, err := opensearch.NewClient(opensearch.Config{
		Addresses:            addrs,
		Username:             user,
		Password:             password,
		Transport:            rt,
		DiscoverNodesOnStart: &noDiscovery,
		EnableRetryOnTimeout: false,
		MaxRetries:           len(addrs) + 2,
		RetryBackoff:         func(attempt int) time.Duration { return time.Duration(attempt) * 50 * time.Millisecond },
	})
	if err != nil {
		return nil, fmt.Errorf("elasticsearch: %s", s.redact(err.Error()))
	}
	s.client = client
	if err := s.setup(ctx); err != nil {
		_ = s.Close()
		return nil, err
	}
	s.log.Info("elasticsearch store ready", "nodes", strings.Join(addrs, ","), "distribution", s.server.Distribution,
		"version", s.server.Version, "indexPattern", s.pattern)
	return s, nil
}

// Close releases the connections.
func (s *Store) Close() error {
	err := s.client.Close()
	if s.ownTransport != nil {
		s.ownTransport.CloseIdleConnections()
	}
	return err
}

// Server is what New found behind the URL.
func (s *Store) Server() Server { return s.server }

// FilterView reports store.FilterViewElasticSearch: a memory primary
// standing in for this store answers alike with
// memory.WithFilterView(store.FilterViewElasticSearch).
func (s *Store) FilterView() store.FilterView { return store.FilterViewElasticSearch }

// IndexPattern is the index pattern in use.
func (s *Store) IndexPattern() string { return s.pattern }

func (s *Store) setup(ctx context.Context) error {
	status, body, err := s.do(ctx, http.MethodGet, "/", nil, nil, "")
	if err != nil {
		return s.classify("connect", "", status, body, err)
	}
	if status != http.StatusOK {
		return s.classify("connect", "", status, body, nil)
	}
	var root struct {
		Version struct {
			Number       string `json:"number"`
			Distribution string `json:"distribution"`
		} `json:"version"`
	}
	if err := json.Unmarshal(body, &root); err != nil || root.Version.Number == "" {
		return &opError{op: "connect", msg: "GET / did not answer like Elasticsearch or OpenSearch (no version.number)"}
	}
	s.server = Server{Distribution: "elasticsearch", Version: root.Version.Number}
	if root.Version.Distribution == "opensearch" {
		s.server.Distribution = "opensearch"
	}
	major, _, _ := strings.Cut(root.Version.Number, ".")
	s.server.Major, _ = strconv.Atoi(major)
	if s.server.Distribution == "elasticsearch" && s.server.Major < 6 {
		return &opError{op: "connect", msg: "Elasticsearch " + root.Version.Number + " is not supported (want 6.8 or later, or OpenSearch)"}
	}
	if !s.cfg.template {
		return nil
	}
	return s.installTemplate(ctx)
}

// TemplateName is the name of the legacy index template New installs for
// the pattern.
func (s *Store) TemplateName() string {
	return strings.ReplaceAll(s.pattern, "%s", "") + "activationstore"
}

// mappingProperties: the fields OpenWhisk's queries use, as dynamic mapping
// names them (text or keyword with a .keyword sub-field) so that one query
// serves indices of either origin; everything else stays in _source only,
// so annotations and results of any shape never meet a mapping conflict.
// Of the annotations, "binding" is indexed, as dynamic mapping types a
// string (text, with .keyword): OpenWhisk's scheduler matches it for
// actions invoked through a package binding. The codec keeps a binding
// that is not a scalar out of the indexed object.
const mappingProperties = `{
	"namespace": {"type": "keyword", "fields": {"keyword": {"type": "keyword"}}},
	"name": {"type": "keyword", "fields": {"keyword": {"type": "keyword"}}},
	"path": {"type": "keyword", "fields": {"keyword": {"type": "keyword"}}},
	"activationId": {"type": "keyword", "fields": {"keyword": {"type": "keyword"}}},
	"subject": {"type": "keyword"},
	"entityType": {"type": "keyword"},
	"version": {"type": "keyword"},
	"publish": {"type": "boolean"},
	"start": {"type": "long"},
	"end": {"type": "long"},
	"duration": {"type": "long"},
	"updated": {"type": "long"},
	"@timestamp": {"type": "date", "ignore_malformed": true},
	"response": {"type": "object", "dynamic": false, "properties": {"statusCode": {"type": "integer"}}},
	"annotations": {"type": "object", "dynamic": false, "properties": {
		"binding": {"type": "text", "fields": {"keyword": {"type": "keyword", "ignore_above": 256}}}
	}}
}`

func (s *Store) installTemplate(ctx context.Context) error {
	mappings := `{"dynamic": false, "properties": ` + mappingProperties + `}`
	if s.server.typed() {
		mappings = `{"_doc": ` + mappings + `}`
	}
	pattern := strings.ReplaceAll(s.pattern, "%s", "*")
	body := fmt.Sprintf(`{"index_patterns": [%s], "order": 0, "settings": {"number_of_shards": %d, "number_of_replicas": %d}, "mappings": %s}`,
		strconv.Quote(pattern), s.cfg.shards, s.cfg.replicas, mappings)
	path := "/_template/" + escape(s.TemplateName())
	status, resp, err := s.do(ctx, http.MethodPut, path, nil, []byte(body), "")
	if err != nil || status != http.StatusOK {
		return s.classify("install index template", s.TemplateName(), status, resp, err)
	}
	s.log.Info("elasticsearch index template installed", "template", s.TemplateName(), "pattern", pattern,
		"shards", s.cfg.shards, "replicas", s.cfg.replicas)
	return nil
}

// rawRequest is a request of this package's own shape, sent through the
// client's Do: the typed API does not fit ES 6, 7 and OpenSearch alike.
type rawRequest struct {
	path, rawPath string
	query         url.Values
	body          []byte
	contentType   string
}

func (r rawRequest) GetRequest(method string) (*http.Request, error) {
	var body io.Reader
	if r.body != nil {
		body = bytes.NewReader(r.body)
	}
	req, err := http.NewRequest(method, "http://placeholder/", body)
	if err != nil {
		return nil, err
	}
	req.URL = &url.URL{Path: r.path, RawPath: r.rawPath, RawQuery: r.query.Encode()}
	if r.body != nil {
		ct := r.contentType
		if ct == "" {
			ct = "application/json"
		}
		req.Header.Set("Content-Type", ct)
	}
	return req, nil
}

// do sends one request and returns the status and body. The error is set
// only when no response came.
func (s *Store) do(ctx context.Context, method, rawPath string, query url.Values, body []byte, contentType string) (int, []byte, error) {
	if s.cfg.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, s.cfg.timeout)
		defer cancel()
	}
	path, err := url.PathUnescape(rawPath)
	if err != nil {
		return 0, nil, err
	}
	resp, err := opensearch.Do[opensearch.NoBody](ctx, s.client, method, rawRequest{path: path, rawPath: rawPath, query: query, body: body, contentType: contentType}, nil)
	if resp == nil {
		if err == nil {
			err = errors.New("no response")
		}
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, rerr := io.ReadAll(resp.Body)
	if err == nil {
		err = rerr
	}
	if err != nil && ctx.Err() != nil {
		return 0, nil, err
	}
	if err != nil && resp.StatusCode == 0 {
		return 0, nil, err
	}
	return resp.StatusCode, b, nil
}

// escape percent-encodes everything but unreserved characters, so that
// "/" in document ids and "+" in index names reach the server as written.
func escape(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~' {
			b.WriteByte(c)
			continue
		}
		fmt.Fprintf(&b, "%%%02X", c)
	}
	return b.String()
}

// serverError is the "error" member of an error reply.
type serverError struct {
	Type   string `json:"type"`
	Reason string `json:"reason"`
}

func parseError(body []byte) serverError {
	var e struct {
		Error json.RawMessage `json:"error"`
	}
	_ = json.Unmarshal(body, &e)
	var se serverError
	if json.Unmarshal(e.Error, &se) != nil {
		var str string
		_ = json.Unmarshal(e.Error, &str)
		se.Reason = str
	}
	return se
}

// classify turns a failed exchange into this package's errors: no
// response, 429 and 5xx into *TransientError, the rest into a permanent
// error. Texts go through s.redact.
func (s *Store) classify(op, id string, status int, body []byte, err error) error {
	if err != nil {
		return &TransientError{Op: op, ID: id, Err: err, msg: s.redact(err.Error())}
	}
	se := parseError(body)
	msg := se.Type + ": " + se.Reason
	if se.Type == "" && se.Reason == "" {
		msg = strings.TrimSpace(string(body))
		if len(msg) > 300 {
			msg = msg[:300] + "…"
		}
	}
	msg = s.redact(msg)
	switch {
	case status == http.StatusTooManyRequests || status >= 500:
		return &TransientError{Op: op, ID: id, StatusCode: status, Err: fmt.Errorf("HTTP %d", status), msg: msg}
	case status == http.StatusUnauthorized || status == http.StatusForbidden:
		return &opError{op: op, id: id, status: status, msg: "not authorized: check the credentials and the user's index privileges: " + msg}
	}
	return &opError{op: op, id: id, status: status, msg: msg}
}

// indexName is the index of a namespace: the pattern with %s replaced by
// the namespace's first segment, lowercased, as OpenWhisk's generateIndex.
// A space, which an index name cannot hold and OpenWhisk sends as is (and
// fails), becomes "+", a character no namespace holds, so that no two
// namespaces that differ by more than case share an index. A name the
// server would refuse (too long) is store.ErrInvalid.
func (s *Store) indexName(namespace string) (string, error) {
	root, _, _ := strings.Cut(namespace, "/")
	root = strings.ReplaceAll(strings.ToLower(root), " ", "+")
	name := strings.ReplaceAll(s.pattern, "%s", root)
	if err := checkIndexName(name); err != nil {
		err.Field = "namespace"
		err.Value = strconv.Quote(namespace)
		err.Reason = "gives the index name " + strconv.Quote(name) + ", which " + err.Reason
		return "", err
	}
	return name, nil
}

// checkIndexName applies the servers' rules for index names.
func checkIndexName(name string) *store.InvalidError {
	fail := func(reason string) *store.InvalidError {
		return &store.InvalidError{Field: "index name", Value: strconv.Quote(name), Reason: reason}
	}
	switch {
	case name == "" || name == "." || name == "..":
		return fail("is not a valid index name")
	case len(name) > 255:
		return fail("is longer than 255 bytes, the servers' limit for index names")
	case strings.ContainsAny(name[:1], "-_+"):
		return fail("must not start with -, _ or +")
	case strings.ContainsAny(name, "\\/*?\"<>| ,#:"):
		return fail(`must not contain \ / * ? " < > | space , # or :`)
	case strings.ToLower(name) != name:
		return fail("must be lowercase")
	}
	return nil
}

// Get reads the activation with a realtime GET of its document.
func (s *Store) Get(ctx context.Context, namespace, activationID string, _ store.UserContext) (*store.Activation, error) {
	if err := validateID(namespace, activationID); err != nil {
		return nil, err
	}
	index, err := s.indexName(namespace)
	if err != nil {
		return nil, err
	}
	id := store.DocID(namespace, activationID)
	status, body, err := s.do(ctx, http.MethodGet, "/"+escape(index)+"/_doc/"+escape(id), nil, nil, "")
	if err != nil {
		return nil, s.classify("get", id, 0, nil, err)
	}
	if status == http.StatusNotFound {
		return nil, store.NotFoundError(namespace, activationID)
	}
	if status != http.StatusOK {
		return nil, s.classify("get", id, status, body, nil)
	}
	var hit struct {
		Found  bool            `json:"found"`
		Source json.RawMessage `json:"_source"`
	}
	if err := json.Unmarshal(body, &hit); err != nil {
		return nil, &opError{op: "get", id: id, msg: "unreadable reply: " + err.Error()}
	}
	if !hit.Found {
		return nil, store.NotFoundError(namespace, activationID)
	}
	a, err := codec.UnmarshalElasticsearchDocument(hit.Source)
	if err != nil {
		return nil, fmt.Errorf("elasticsearch: get %s: document is corrupted and cannot be read: %w", strconv.Quote(id), err)
	}
	return a, nil
}

// Delete removes the activation's document (OpenWhisk deletes by query,
// which needs the reindex module; a DELETE of the document id does the same).
func (s *Store) Delete(ctx context.Context, namespace, activationID string, _ store.UserContext) error {
	if err := validateID(namespace, activationID); err != nil {
		return err
	}
	index, err := s.indexName(namespace)
	if err != nil {
		return err
	}
	id := store.DocID(namespace, activationID)
	status, body, err := s.do(ctx, http.MethodDelete, "/"+escape(index)+"/_doc/"+escape(id), nil, nil, "")
	if err != nil {
		return s.classify("delete", id, 0, nil, err)
	}
	switch status {
	case http.StatusOK:
		return nil
	case http.StatusNotFound:
		return store.NotFoundError(namespace, activationID)
	}
	return s.classify("delete", id, status, body, nil)
}

// Store writes a as a new document; one with the same id already there
// gives store.ErrConflict.
func (s *Store) Store(ctx context.Context, a *store.Activation, uc store.UserContext) (store.DocInfo, error) {
	if err := ctx.Err(); err != nil {
		return store.DocInfo{}, err
	}
	res, err := s.StoreBatch(ctx, []*store.Activation{a}, uc)
	if err != nil {
		return store.DocInfo{}, err
	}
	return res[0].DocInfo, res[0].Err
}

func validateID(namespace, activationID string) error {
	if err := store.ValidateNamespace(namespace); err != nil {
		return err
	}
	return store.ValidateActivationID(activationID)
}
