package elasticsearch

import (
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"time"
)

// Defaults of the options.
const (
	// DefaultIndexPattern is OpenWhisk's whisk.activationstore.elasticsearch.index-pattern
	// (ansible group_vars/all: "openwhisk-%s"): %s is the namespace's first
	// segment, lowercased.
	DefaultIndexPattern = "openwhisk-%s"
	// DefaultTimeout bounds each request.
	DefaultTimeout = 30 * time.Second
	// DefaultBatchDocs is the most documents sent in one _bulk request, as
	// OpenWhisk's batcher (500).
	DefaultBatchDocs = 500
	// DefaultBatchBytes is the most bytes of one _bulk request body, well
	// under http.max_content_length (100 MB). A larger document travels alone.
	DefaultBatchBytes = 16 << 20
	// DefaultShards and DefaultReplicas are the settings of the index
	// template New installs: one shard (as ES 7 and OpenSearch default to;
	// ES 6 would make 5) and one replica (green on a cluster of two nodes
	// or more, yellow but writable on one).
	DefaultShards   = 1
	DefaultReplicas = 1
	// DefaultMaxConnsPerHost caps the connections of the default transport.
	DefaultMaxConnsPerHost = 64
)

// Option configures a Store.
type Option func(*config)

type config struct {
	pattern          string
	timeout          time.Duration
	logger           *slog.Logger
	batchDocs        int
	batchBytes       int
	shards, replicas int
	template         bool
	refreshOnRead    bool
	transport        http.RoundTripper
	caFile           string
	caErr            error
	caCert           []byte
	username         string
	password         string
	now              func() time.Time
}

func defaults() config {
	return config{
		pattern:       DefaultIndexPattern,
		timeout:       DefaultTimeout,
		batchDocs:     DefaultBatchDocs,
		batchBytes:    DefaultBatchBytes,
		shards:        DefaultShards,
		replicas:      DefaultReplicas,
		template:      true,
		refreshOnRead: true,
		now:           time.Now,
	}
}

func (c *config) validate() error {
	switch {
	case c.timeout < 0:
		return fmt.Errorf("elasticsearch: WithTimeout(%v): must not be negative (0 disables the timeout)", c.timeout)
	case c.batchDocs < 1:
		return fmt.Errorf("elasticsearch: WithBatchLimits: maxDocs %d must be at least 1", c.batchDocs)
	case c.batchBytes < 1:
		return fmt.Errorf("elasticsearch: WithBatchLimits: maxBytes %d must be at least 1", c.batchBytes)
	case c.shards < 1 || c.replicas < 0:
		return fmt.Errorf("elasticsearch: WithShards(%d, %d): want at least 1 shard and 0 or more replicas", c.shards, c.replicas)
	case c.caErr != nil:
		return c.caErr
	}
	return checkPattern(c.pattern)
}

// checkPattern accepts patterns that, like OpenWhisk's, hold %s once (or
// never: one index for every namespace) and no other format verb.
func checkPattern(p string) error {
	p = strings.TrimLeft(p, "/")
	rest := strings.ReplaceAll(p, "%s", "")
	if strings.Contains(rest, "%") || strings.Count(p, "%s") > 1 {
		return fmt.Errorf("elasticsearch: WithIndexPattern(%q): want at most one %%s (the namespace) and no other %%", p)
	}
	if err := checkIndexName(strings.ReplaceAll(p, "%s", "ns")); err != nil {
		return fmt.Errorf("elasticsearch: WithIndexPattern(%q): %s", p, err.Reason)
	}
	return nil
}

// WithIndexPattern sets the index name pattern, OpenWhisk's
// index-pattern: "%s" is replaced by the namespace's first segment,
// lowercased (leading "/" are dropped, as OpenWhisk does). Default:
// DefaultIndexPattern.
func WithIndexPattern(p string) Option { return func(c *config) { c.pattern = p } }

// WithTimeout bounds each request (a _bulk request counts as one); 0
// disables the bound, leaving the caller's context. Default: DefaultTimeout.
func WithTimeout(d time.Duration) Option { return func(c *config) { c.timeout = d } }

// WithLogger logs through l: version detection and template installation
// at Info, documents that cannot be read at Warn. Default: no logging.
func WithLogger(l *slog.Logger) Option { return func(c *config) { c.logger = l } }

// WithBatchLimits caps each _bulk request of StoreBatch at maxDocs
// documents and maxBytes bytes. Default: DefaultBatchDocs and DefaultBatchBytes.
func WithBatchLimits(maxDocs, maxBytes int) Option {
	return func(c *config) { c.batchDocs, c.batchBytes = maxDocs, maxBytes }
}

// WithShards sets the shards and replicas of the index template New
// installs for the pattern. Default: DefaultShards, DefaultReplicas.
func WithShards(shards, replicas int) Option {
	return func(c *config) { c.shards, c.replicas = shards, replicas }
}

// WithIndexTemplate turns off (false) the legacy index template New
// installs for the pattern, for clusters whose operators manage mappings.
// Indices are then created by the server's defaults (dynamic mapping, as
// OpenWhisk's own indices), which this package reads as well. Default: true.
func WithIndexTemplate(on bool) Option { return func(c *config) { c.template = on } }

// WithRefreshOnRead makes List, Count and DurationStats refresh the index
// before searching, so that a record is listed as soon as Store returns
// (read-your-writes). OpenWhisk does not: its lists miss the writes of the
// last refresh interval (1 s). Turn it off on busy clusters. Default: true.
func WithRefreshOnRead(on bool) Option { return func(c *config) { c.refreshOnRead = on } }

// WithTransport sends requests through rt (TLS settings, proxies); Basic
// auth from the URL is added on top. Default: a transport of its own with
// up to DefaultMaxConnsPerHost connections per node.
func WithTransport(rt http.RoundTripper) Option { return func(c *config) { c.transport = rt } }

// WithCAFile trusts the PEM certificates in file for https URLs, as the
// CouchDB primary's TLS set-up. Ignored with WithTransport.
func WithCAFile(file string) Option {
	return func(c *config) {
		c.caFile = file
		b, err := os.ReadFile(file)
		if err != nil {
			c.caErr = fmt.Errorf("elasticsearch: WithCAFile: %w", err)
			return
		}
		c.caCert = b
	}
}

// WithBasicAuth sets the credentials (OpenWhisk's username and password
// settings); credentials in the URL do the same. They never appear in an
// error or a log.
func WithBasicAuth(user, password string) Option {
	return func(c *config) { c.username, c.password = user, password }
}

// withClock sets the source of the documents' "updated" time (tests).
func withClock(now func() time.Time) Option { return func(c *config) { c.now = now } }

func defaultTransport() *http.Transport {
	return &http.Transport{
		Proxy: http.ProxyFromEnvironment,
		DialContext: (&net.Dialer{
			Timeout:   10 * time.Second,
			KeepAlive: 30 * time.Second,
		}).DialContext,
		MaxIdleConns:          DefaultMaxConnsPerHost,
		MaxIdleConnsPerHost:   DefaultMaxConnsPerHost,
		MaxConnsPerHost:       DefaultMaxConnsPerHost,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: time.Second,
	}
}
