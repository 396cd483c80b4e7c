package couchdb

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/go-kivik/kivik/v4"
	kivikcouch "github.com/go-kivik/kivik/v4/couchdb"
	"github.com/go-kivik/kivik/v4/couchdb/chttp"

	"github.com/go-whisk/activationstore/codec"
	"github.com/go-whisk/activationstore/store"
)

// Store keeps activations in one CouchDB database, in OpenWhisk's document
// form. It is safe for concurrent use.
type Store struct {
	client *kivik.Client
	db     *kivik.DB
	// raw sends _bulk_docs bodies that the store encoded itself: kivik
	// would encode the encoded documents again.
	raw    *chttp.Client
	dbName string
	host   string // the first node's host:port
	cfg    config
	// view is the filters view List and Count query, fixed by New.
	view store.FilterView
	log  *slog.Logger
	// redact removes the credentials of the URL from error texts.
	redact func(string) string
	// transport is closed with the store when the store made it.
	ownTransport *http.Transport
	// copies is the database's n (0: the server does not say); w the
	// write quorum sent with every write (0: the server's default).
	copies, w int
	// conflictsRemoved counts conflicting revisions deleted.
	conflictsRemoved atomic.Int64
	// writing serialises this process's Stores of one document.
	writing idLocks
	// nodes moves requests between the nodes New was given; nil for one.
	nodes *failover
}

var (
	_ store.Store        = (*Store)(nil)
	_ store.BatchStorer  = (*Store)(nil)
	_ store.FilterViewer = (*Store)(nil)
)

// dbNamePattern is CouchDB's rule for database names.
var dbNamePattern = regexp.MustCompile(`^[a-z][a-z0-9_$()+/-]*$`)

// New connects to the CouchDB server at rawURL ("http://user:secret@host:5984";
// credentials in the URL are sent as Basic auth and never appear in errors
// or logs) and prepares the database dbName: it creates the database and
// OpenWhisk's activation design documents when they are missing. Several
// processes may call New on one database at once. ctx bounds this set-up.
//
// rawURL may list the nodes of one CouchDB cluster, separated by commas
// ("http://user:secret@node1:5984,http://node2:5984,http://node3:5984"; the
// first URL's credentials and path serve every node). Requests go to one
// node; when it stops answering (connection refused, reset or closed
// without a reply) the request goes to the next node, which serves the
// following requests too, so that a store keeps working while a node of
// the cluster is down. A write cut off by the failure is sent again as it
// was; a new document that the failed node did write then reports
// store.ErrConflict, as a retry by the caller would.
func New(ctx context.Context, rawURL, dbName string, opts ...Option) (*Store, error) {
	cfg := defaults()
	for _, o := range opts {
		o(&cfg)
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if !dbNamePattern.MatchString(dbName) || len(dbName) > 238 {
		return nil, &store.InvalidError{Field: "database name", Value: strconv.Quote(dbName),
			Reason: "must start with a lowercase letter and contain only a-z, 0-9 and _$()+/- (at most 238 characters)"}
	}
	u, nodes, err := parseNodes(rawURL)
	if err != nil {
		return nil, err
	}
	redact := func(s string) string { return s }
	var user, password string
	auth := u.User != nil
	if auth {
		user = u.User.Username()
		password, _ = u.User.Password()
		redact = redactor(u.User.String(), password)
		u.User = nil
	}
	dsn := strings.TrimSuffix(u.String(), "/")

	s := &Store{dbName: dbName, cfg: cfg, view: cfg.filterView, redact: redact, host: u.Host}
	s.log = cfg.logger
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	hc := cfg.httpClient
	if hc == nil {
		hc = defaultHTTPClient()
		s.ownTransport = hc.Transport.(*http.Transport)
	}
	if len(nodes) > 1 {
		next := hc.Transport
		if next == nil {
			next = http.DefaultTransport
		}
		s.nodes = &failover{next: next, nodes: nodes, log: s.log}
		withFailover := *hc
		withFailover.Transport = s.nodes
		hc = &withFailover
	}
	kopts := []kivik.Option{kivikcouch.OptionHTTPClient(hc)}
	var rawOpts driverOptions
	if !cfg.compress {
		kopts = append(kopts, kivikcouch.OptionNoRequestCompression())
		rawOpts = append(rawOpts, chttp.OptionNoRequestCompression())
	}
	if auth {
		kopts = append(kopts, kivikcouch.BasicAuth(user, password))
		rawOpts = append(rawOpts, chttp.BasicAuth(user, password))
	}
	if s.raw, err = chttp.New(hc, dsn, rawOpts); err != nil {
		return nil, fmt.Errorf("couchdb: %s", redact(err.Error()))
	}
	client, err := kivik.New("couch", dsn, kopts...)
	if err != nil {
		return nil, fmt.Errorf("couchdb: %s", redact(err.Error()))
	}
	s.client = client
	s.db = client.DB(dbName)
	if err := s.setup(ctx); err != nil {
		_ = s.Close()
		return nil, err
	}
	s.log.Debug("couchdb store ready", "url", dsn, "db", dbName)
	return s, nil
}

// driverOptions applies several kivik options to one target.
type driverOptions []kivik.Option

func (o driverOptions) Apply(target any) {
	for _, opt := range o {
		opt.Apply(target)
	}
}

// redactor returns a function that removes userinfo and password from a text.
func redactor(userinfo, password string) func(string) string {
	pairs := []string{userinfo + "@", "xxxxx@"}
	if un, err := url.PathUnescape(userinfo); err == nil && un != userinfo {
		pairs = append(pairs, un+"@", "xxxxx@")
	}
	// A password too short to be told from ordinary text is left to the
	// userinfo rule; kivik never sees the credentials in any case.
	if len(password) >= 4 {
		pairs = append(pairs, password, "xxxxx")
		if esc := url.QueryEscape(password); esc != password {
			pairs = append(pairs, esc, "xxxxx")
		}
	}
	r := strings.NewReplacer(pairs...)
	return r.Replace
}

// Close releases the connections. Calls in flight finish first.
func (s *Store) Close() error {
	err := s.client.Close()
	if s.ownTransport != nil {
		s.ownTransport.CloseIdleConnections()
	}
	return err
}

// Node is the host:port of the CouchDB node requests go to now: the first
// URL's until it stops answering (see New).
func (s *Store) Node() string {
	if s.nodes == nil {
		return s.host
	}
	return s.nodes.current().host
}

// NodeMoves counts the times requests moved to another node because the
// current one stopped answering.
func (s *Store) NodeMoves() int64 {
	if s.nodes == nil {
		return 0
	}
	return s.nodes.moves.Load()
}

// DB is the name of the database.
func (s *Store) DB() string { return s.dbName }

// FilterView is the version of OpenWhisk's name-filter view that List and
// Count query for a Query.Name (see [WithFilterView]). A memory primary
// standing in for this store emulates it with memory.WithFilterView.
func (s *Store) FilterView() store.FilterView { return s.view }

func (s *Store) withTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	if s.cfg.timeout <= 0 {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, s.cfg.timeout)
}

// Store writes a as a new document "<namespace>/<activationId>". A document
// with that id already there gives store.ErrConflict. The write waits for
// the copies WithWriteQuorum names; one answered 202 (fewer copies reached)
// is checked for conflicting revisions as StoreBatch does.
func (s *Store) Store(ctx context.Context, a *store.Activation, _ store.UserContext) (store.DocInfo, error) {
	if err := store.ValidateActivation(a); err != nil {
		return store.DocInfo{}, err
	}
	body, err := codec.MarshalDocument(a, updatedOf(a))
	if err != nil {
		return store.DocInfo{}, err
	}
	id := a.DocID()
	ctx, cancel := s.withTimeout(ctx)
	defer cancel()
	unlock, err := s.writing.lock(ctx, id)
	if err != nil {
		return store.DocInfo{}, s.classify(ctx, "store", id, err)
	}
	defer unlock()
	rev, accepted, err := s.put(ctx, id, body)
	if err != nil {
		return store.DocInfo{}, s.classify(ctx, "store", id, err)
	}
	if accepted {
		dup, err := s.settleAccepted(ctx, map[string]string{id: rev})
		if err != nil {
			return store.DocInfo{}, s.unsettled(ctx, "store", id, err)
		}
		if err := dup[id]; err != nil {
			return store.DocInfo{}, err
		}
	}
	return store.DocInfo{ID: id, Rev: rev}, nil
}

// put creates the document id with the encoded body, as it is; accepted
// reports a 202 (fewer copies than the write quorum reached).
func (s *Store) put(ctx context.Context, id string, body []byte) (rev string, accepted bool, err error) {
	resp, err := s.raw.DoReq(ctx, http.MethodPut, s.dbPath()+"/"+url.PathEscape(id)+s.writeQuery(), &chttp.Options{
		GetBody:       bodyFunc(body),
		ContentLength: int64(len(body)),
	})
	if err != nil {
		return "", false, err
	}
	defer chttp.CloseBody(resp.Body)
	if err := chttp.ResponseError(resp); err != nil {
		return "", false, err
	}
	var res struct {
		Rev string `json:"rev"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&res); err != nil {
		return "", false, fmt.Errorf("couchdb: reply to the write of %q: %w", id, err)
	}
	return res.Rev, resp.StatusCode == http.StatusAccepted, nil
}

// Get reads the activation. A document that is not an activation gives
// ErrNotActivation; one that cannot be decoded gives an error matching
// codec.ErrMalformed.
func (s *Store) Get(ctx context.Context, namespace, activationID string, _ store.UserContext) (*store.Activation, error) {
	if err := validateID(namespace, activationID); err != nil {
		return nil, err
	}
	id := store.DocID(namespace, activationID)
	ctx, cancel := s.withTimeout(ctx)
	defer cancel()
	var raw json.RawMessage
	if err := s.db.Get(ctx, id).ScanDoc(&raw); err != nil {
		return nil, s.classify(ctx, "get", id, err)
	}
	doc, err := codec.UnmarshalDocument(raw)
	if err != nil {
		if et := entityType(raw); et != "" && et != "activation" {
			return nil, fmt.Errorf("%w: %s has entityType %s", ErrNotActivation, strconv.Quote(id), strconv.Quote(et))
		}
		return nil, fmt.Errorf("couchdb: get %s: document is corrupted and cannot be read: %w", strconv.Quote(id), err)
	}
	if doc.EntityType != "" && doc.EntityType != "activation" {
		return nil, fmt.Errorf("%w: %s has entityType %s", ErrNotActivation, strconv.Quote(id), strconv.Quote(doc.EntityType))
	}
	return doc.Activation, nil
}

func entityType(raw []byte) string {
	var d struct {
		EntityType string `json:"entityType"`
	}
	_ = json.Unmarshal(raw, &d)
	return d.EntityType
}

// deleteAttempts bounds Delete's retries when the document changes between
// reading its revisions and deleting them.
const deleteAttempts = 3

// Delete removes the activation's document: every live leaf revision of it,
// read from every copy, so that a revision left by a conflicting write
// cannot become the document again once the winner is gone. A document
// without a live revision gives store.ErrNotFound.
func (s *Store) Delete(ctx context.Context, namespace, activationID string, _ store.UserContext) error {
	if err := validateID(namespace, activationID); err != nil {
		return err
	}
	id := store.DocID(namespace, activationID)
	var err error
	for range deleteAttempts {
		if err = s.deleteOnce(ctx, id); !errors.Is(err, store.ErrConflict) {
			return err
		}
	}
	return err
}

func (s *Store) deleteOnce(ctx context.Context, id string) error {
	ctx, cancel := s.withTimeout(ctx)
	defer cancel()
	leaves, err := s.leaves(ctx, []string{id})
	if err != nil {
		return s.classify(ctx, "delete", id, err)
	}
	var dels []deletion
	for _, r := range leaves[id] {
		if !r.deleted {
			dels = append(dels, deletion{ID: id, Rev: r.rev, Deleted: true})
		}
	}
	if len(dels) == 0 {
		return fmt.Errorf("%w: %s", store.ErrNotFound, strconv.Quote(id))
	}
	conflicts, err := s.deleteRevs(ctx, dels)
	if err != nil {
		return s.classify(ctx, "delete", id, err)
	}
	if len(conflicts) > 0 {
		// A revision changed meanwhile: read them again.
		return store.ConflictError(id)
	}
	return nil
}

func validateID(namespace, activationID string) error {
	if err := store.ValidateNamespace(namespace); err != nil {
		return err
	}
	return store.ValidateActivationID(activationID)
}

// since is the start of the view's key range: the query's Since in epoch
// milliseconds, or 0.
func since(t time.Time) any {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

// upto is the end of the view's key range: Upto, or OpenWhisk's TOP.
func upto(t time.Time) any {
	if t.IsZero() {
		return top
	}
	return t.UnixMilli()
}
