package couchdb

import (
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/go-whisk/activationstore/store"
)

// Defaults of the options.
const (
	// DefaultTimeout bounds each request to CouchDB.
	DefaultTimeout = 30 * time.Second
	// DefaultBatchDocs is the most documents sent in one _bulk_docs request:
	// OpenWhisk's activation store batches 500.
	DefaultBatchDocs = 500
	// DefaultBatchBytes is the most document bytes sent in one _bulk_docs
	// request, well under CouchDB's max_http_request_size. A document larger
	// than this travels alone.
	DefaultBatchBytes = 16 << 20
	// DefaultMaxConnsPerHost caps the connections of the default HTTP client,
	// as OpenWhisk's host-connection-pool.max-connections / 2.
	DefaultMaxConnsPerHost = 64
)

// Option configures a Store.
type Option func(*config)

type config struct {
	httpClient  *http.Client
	timeout     time.Duration
	logger      *slog.Logger
	batchDocs   int
	batchBytes  int
	updateAfter bool
	compress    bool
	filterView  store.FilterView // "": detect
	writeQuorum WriteQuorum
}

func defaults() config {
	return config{
		timeout:    DefaultTimeout,
		batchDocs:  DefaultBatchDocs,
		batchBytes: DefaultBatchBytes,
	}
}

func (c *config) validate() error {
	switch {
	case c.timeout < 0:
		return fmt.Errorf("couchdb: WithTimeout(%v): must not be negative (0 disables the timeout)", c.timeout)
	case c.batchDocs < 1:
		return fmt.Errorf("couchdb: WithBatchLimits: maxDocs %d must be at least 1", c.batchDocs)
	case c.batchBytes < 1:
		return fmt.Errorf("couchdb: WithBatchLimits: maxBytes %d must be at least 1", c.batchBytes)
	case c.writeQuorum < WriteMajority:
		return fmt.Errorf("couchdb: WithWriteQuorum(%d): want WriteAll, WriteMajority or a number of copies", c.writeQuorum)
	case c.filterView != "" && !c.filterView.Valid():
		return fmt.Errorf("couchdb: WithFilterView(%q): unknown view (want store.FilterViewV210 or store.FilterViewV211)", string(c.filterView))
	}
	return nil
}

// WithHTTPClient sends requests through c; Basic auth from the URL is
// added on top of its transport. Default: a client of its own whose
// transport keeps up to DefaultMaxConnsPerHost connections to the server
// (net/http's default keeps only 2 idle ones, which churns connections under
// concurrent load). c's own Timeout, if any, applies besides WithTimeout.
func WithHTTPClient(c *http.Client) Option {
	return func(cfg *config) { cfg.httpClient = c }
}

// WithTimeout bounds each request to CouchDB (a _bulk_docs request counts as
// one); a request that exceeds it fails with a *TransientError. 0 disables
// the bound, leaving only the caller's context. Default: DefaultTimeout.
func WithTimeout(d time.Duration) Option {
	return func(cfg *config) { cfg.timeout = d }
}

// WithLogger logs through l: database and design document creation at
// Info, records dropped from a list because they cannot be decoded at Warn.
// Default: no logging.
func WithLogger(l *slog.Logger) Option {
	return func(cfg *config) { cfg.logger = l }
}

// WithBatchLimits caps each _bulk_docs request of StoreBatch at maxDocs
// documents and maxBytes bytes of documents; larger batches are split.
// Default: DefaultBatchDocs and DefaultBatchBytes.
func WithBatchLimits(maxDocs, maxBytes int) Option {
	return func(cfg *config) { cfg.batchDocs, cfg.batchBytes = maxDocs, maxBytes }
}

// WithStaleUpdateAfter makes List and Count query the views with
// stale=update_after, as OpenWhisk does: CouchDB answers from the index as
// it is and updates it afterwards, so reads are fast but may miss the latest
// writes. Default: false — every read waits for the index to include all
// writes, so a record is listed as soon as Store returns (read-your-writes).
func WithStaleUpdateAfter(on bool) Option {
	return func(cfg *config) { cfg.updateAfter = on }
}

// WithRequestCompression gzips request bodies. It saves bandwidth for large
// records (logs) over slow links, at a CPU cost. Default: false.
func WithRequestCompression(on bool) Option {
	return func(cfg *config) { cfg.compress = on }
}

// WithFilterView sets the version of OpenWhisk's name-filter view that List
// and Count query when the query names an action: store.FilterViewV211
// (OpenWhisk master) or store.FilterViewV210 (deployments of the Kafka
// activation store PR's era, and any that have not migrated). The versions
// list activations made through a package binding under different names;
// use the one the deployment's controllers query
// (whisk.db.activations-filter-ddoc). New installs that design document when
// it is missing.
//
// Default: detect. New uses whisks-filters.v2.1.1 when the database holds
// it, else whisks-filters.v2.1.0 when the database holds that, else (a new
// database) installs and uses v2.1.1. It never adds a second filters view
// to a database that has one, which would make CouchDB index every
// activation again. [Store.FilterView] reports the choice.
func WithFilterView(v store.FilterView) Option {
	return func(cfg *config) { cfg.filterView = v }
}

func defaultHTTPClient() *http.Client {
	return &http.Client{Transport: &http.Transport{
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
	}}
}
