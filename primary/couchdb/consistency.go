package couchdb

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/go-kivik/kivik/v4/couchdb/chttp"

	"github.com/go-whisk/activationstore/store"
)

// WriteQuorum is how many copies of a document a write waits for before
// CouchDB answers it: CouchDB's w parameter. A clustered database keeps n
// copies of every document (n=3 by default); a single node keeps one.
type WriteQuorum int

const (
	// WriteAll waits for every copy (w = the database's n): the default.
	// When a write returns, every copy holds it, so a List or Count that
	// follows — a view query reads one copy of each shard — includes it.
	WriteAll WriteQuorum = 0
	// WriteMajority waits for a majority of the copies (n/2+1), CouchDB's
	// own default and what OpenWhisk sends. Writes answer sooner and keep
	// answering 201 while a copy is slow, but a List or Count right after
	// a Store may miss the record for a moment on a cluster.
	WriteMajority WriteQuorum = -1
)

// WithWriteQuorum sets how many copies of each document Store, StoreBatch
// and Delete wait for: WriteAll (the default), WriteMajority, or a number
// of copies between 1 and the database's n. It does not matter on a single
// node (n=1).
//
// The guarantee of the default: a record is listed and counted by every
// List and Count that starts after its Store returned nil, on a single node
// and on a cluster alike (read-your-writes, together with the default
// WithStaleUpdateAfter(false)). Its cost: each write waits for the slowest
// copy, and a write that reaches fewer copies — one node down — is answered
// 202 and checked for conflicting revisions with one more request (see
// StoreBatch), so writes are slower while a node is down. They still
// succeed.
func WithWriteQuorum(w WriteQuorum) Option {
	return func(cfg *config) { cfg.writeQuorum = w }
}

// dbInfo reads the database's number of copies (n) from GET /db; 0 for a
// server that does not say (PouchDB), which then gets no w parameter.
func (s *Store) dbInfo(ctx context.Context) error {
	ctx, cancel := s.withTimeout(ctx)
	defer cancel()
	resp, err := s.raw.DoReq(ctx, http.MethodGet, s.dbPath(), nil)
	if err == nil {
		defer chttp.CloseBody(resp.Body)
		err = chttp.ResponseError(resp)
	}
	if err != nil {
		return s.classify(ctx, "read database info", s.dbName, err)
	}
	var info struct {
		Cluster struct {
			N int `json:"n"`
		} `json:"cluster"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&info); err != nil {
		return &opError{op: "read database info", id: s.dbName, err: err, msg: "unexpected reply: " + err.Error()}
	}
	s.copies = info.Cluster.N
	switch w := s.cfg.writeQuorum; {
	case s.copies == 0:
		s.w = 0
	case w == WriteAll:
		s.w = s.copies
	case w == WriteMajority:
		s.w = 0 // CouchDB's default quorum
	case int(w) > s.copies:
		return fmt.Errorf("couchdb: WithWriteQuorum(%d): database %q keeps only %d copies of each document", w, s.dbName, s.copies)
	default:
		s.w = int(w)
	}
	return nil
}

// dbPath is the database's path, escaped.
func (s *Store) dbPath() string { return "/" + url.PathEscape(s.dbName) }

// writeQuery is the query string of writes: the write quorum, if any.
func (s *Store) writeQuery() string {
	if s.w == 0 {
		return ""
	}
	return "?w=" + strconv.Itoa(s.w)
}

// readQuery is the query string of the reads that look for every revision
// of a document: they ask every copy (r = n), so that a revision held by one
// copy only is seen.
func (s *Store) readQuery() string {
	if s.copies == 0 {
		return ""
	}
	return "?r=" + strconv.Itoa(s.copies)
}

// revision is one leaf revision of a document.
type revision struct {
	rev     string
	deleted bool
}

// leaves reads every leaf revision of each document of ids from every copy
// (_bulk_get, which opens all leaves when no revision is named, with r = n).
// A server that does not say how many copies it keeps (PouchDB, whose
// _bulk_get opens only the winner) is asked document by document
// (?open_revs=all). A document that does not exist has no leaves.
func (s *Store) leaves(ctx context.Context, ids []string) (map[string][]revision, error) {
	out := make(map[string][]revision, len(ids))
	if s.copies == 0 {
		for _, id := range ids {
			revs, err := s.openRevs(ctx, id)
			if err != nil {
				return nil, err
			}
			out[id] = revs
		}
		return out, nil
	}
	type docRef struct {
		ID string `json:"id"`
	}
	req := struct {
		Docs []docRef `json:"docs"`
	}{Docs: make([]docRef, len(ids))}
	for i, id := range ids {
		req.Docs[i].ID = id
	}
	body, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	resp, err := s.raw.DoReq(ctx, http.MethodPost, s.dbPath()+"/_bulk_get"+s.readQuery(), &chttp.Options{
		GetBody:       bodyFunc(body),
		ContentLength: int64(len(body)),
	})
	if err == nil {
		defer chttp.CloseBody(resp.Body)
		err = chttp.ResponseError(resp)
	}
	if err != nil {
		return nil, err
	}
	var res struct {
		Results []struct {
			ID   string      `json:"id"`
			Docs []leafReply `json:"docs"`
		} `json:"results"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&res); err != nil {
		return nil, fmt.Errorf("couchdb: _bulk_get reply: %w", err)
	}
	for _, r := range res.Results {
		revs, err := leafRevisions(r.ID, r.Docs)
		if err != nil {
			return nil, err
		}
		out[r.ID] = append(out[r.ID], revs...)
	}
	return out, nil
}

// openRevs reads the leaf revisions of one document (?open_revs=all).
func (s *Store) openRevs(ctx context.Context, id string) ([]revision, error) {
	resp, err := s.raw.DoReq(ctx, http.MethodGet, s.dbPath()+"/"+url.PathEscape(id)+"?open_revs=all", nil)
	if err == nil {
		defer chttp.CloseBody(resp.Body)
		err = chttp.ResponseError(resp)
	}
	if err != nil {
		return nil, err
	}
	var docs []leafReply
	if err := json.NewDecoder(resp.Body).Decode(&docs); err != nil {
		return nil, fmt.Errorf("couchdb: open_revs reply: %w", err)
	}
	return leafRevisions(id, docs)
}

// leafReply is one leaf in a _bulk_get or open_revs reply: the document
// (its revision and whether it is deleted), or why it is missing.
type leafReply struct {
	OK *struct {
		Rev     string `json:"_rev"`
		Deleted bool   `json:"_deleted"`
	} `json:"ok"`
	Missing string `json:"missing"`
	Error   *struct {
		Error string `json:"error"`
	} `json:"error"`
}

func leafRevisions(id string, docs []leafReply) ([]revision, error) {
	var revs []revision
	for _, d := range docs {
		switch {
		case d.OK != nil:
			revs = append(revs, revision{rev: d.OK.Rev, deleted: d.OK.Deleted})
		case d.Error != nil && d.Error.Error != "not_found":
			return nil, fmt.Errorf("couchdb: reading the revisions of %q: %s", id, d.Error.Error)
		}
	}
	return revs, nil
}

// winner is the revision CouchDB shows of live (revisions, the deleted
// ones left out): the one with the longest history, of those the greatest
// id. "" when none is live. Every writer that sees the same revisions picks
// the same one, and the greatest revision of all is never a loser to
// anyone, so writers that remove losers at the same time never remove every
// revision.
func winner(revs []revision) string {
	best, bestPos, bestHash := "", -1, ""
	for _, r := range revs {
		if r.deleted {
			continue
		}
		pos, hash := splitRev(r.rev)
		if pos > bestPos || (pos == bestPos && hash > bestHash) {
			best, bestPos, bestHash = r.rev, pos, hash
		}
	}
	return best
}

// splitRev splits "3-abc" into 3 and "abc".
func splitRev(rev string) (int, string) {
	for i := 0; i < len(rev); i++ {
		if rev[i] == '-' {
			n, err := strconv.Atoi(rev[:i])
			if err != nil {
				return -1, rev
			}
			return n, rev[i+1:]
		}
	}
	return -1, rev
}

// deletion is a _bulk_docs item that deletes one revision.
type deletion struct {
	ID      string `json:"_id"`
	Rev     string `json:"_rev"`
	Deleted bool   `json:"_deleted"`
}

// deleteRevs deletes each revision of dels in one _bulk_docs request. A
// revision that is no longer a leaf (deleted meanwhile) is no error; the
// error names the first document that could not be deleted otherwise.
func (s *Store) deleteRevs(ctx context.Context, dels []deletion) (conflicts []string, err error) {
	body, err := json.Marshal(struct {
		Docs []deletion `json:"docs"`
	}{dels})
	if err != nil {
		return nil, err
	}
	res, err := s.postBulk(ctx, body)
	if err != nil {
		return nil, err
	}
	if len(res) != len(dels) {
		return nil, fmt.Errorf("couchdb: _bulk_docs answered %d results for %d deletions", len(res), len(dels))
	}
	for i, r := range res {
		switch r.Error {
		case "":
		case "conflict":
			conflicts = append(conflicts, dels[i].ID)
		default:
			return conflicts, fmt.Errorf("couchdb: deleting revision %s of %q: %s", dels[i].Rev, dels[i].ID, s.redact(r.Error+": "+r.Reason))
		}
	}
	return conflicts, nil
}

// resolveAttempts bounds how often a write answered 202 is checked for
// conflicting revisions when the check itself fails.
const resolveAttempts = 3

// settleAccepted checks documents whose write CouchDB accepted on fewer
// copies than the write quorum (HTTP 202, "accepted": true). Such a write
// may have met an existing document on some copies and created it on the
// others, which leaves two revisions of one document: a conflict that
// replication spreads to every copy. For each document, every copy's leaf
// revisions are read; when more than one is live, the document existed
// already: every live revision but the winner (the one CouchDB shows) is
// deleted, and the write is a duplicate, reported as store.ErrConflict, as
// a 409 would be. A write that met no other revision keeps its result.
//
// written maps each document id to the revision the write answered; the
// result maps the ids that turned out duplicates to their error.
func (s *Store) settleAccepted(ctx context.Context, written map[string]string) (map[string]error, error) {
	ids := make([]string, 0, len(written))
	for id := range written {
		ids = append(ids, id)
	}
	var err error
	for attempt := range resolveAttempts {
		if attempt > 0 {
			select {
			case <-ctx.Done():
				return nil, err
			case <-time.After(time.Duration(attempt) * 100 * time.Millisecond):
			}
		}
		var dup map[string]error
		if dup, err = s.settleOnce(ctx, ids); err == nil {
			return dup, nil
		}
	}
	return nil, err
}

func (s *Store) settleOnce(ctx context.Context, ids []string) (map[string]error, error) {
	leaves, err := s.leaves(ctx, ids)
	if err != nil {
		return nil, err
	}
	dup := map[string]error{}
	var dels []deletion
	for _, id := range ids {
		revs := leaves[id]
		keep := winner(revs)
		live := 0
		for _, r := range revs {
			if r.deleted {
				continue
			}
			live++
			if r.rev != keep {
				dels = append(dels, deletion{ID: id, Rev: r.rev, Deleted: true})
			}
		}
		if live > 1 {
			dup[id] = store.ConflictError(id)
		}
	}
	if len(dels) == 0 {
		return dup, nil
	}
	s.log.WarnContext(ctx, "couchdb: removing conflicting revisions of documents written twice",
		"db", s.dbName, "revisions", len(dels), "first", dels[0].ID)
	if _, err := s.deleteRevs(ctx, dels); err != nil {
		return nil, err
	}
	s.conflictsRemoved.Add(int64(len(dels)))
	return dup, nil
}

// ConflictsRemoved is the number of conflicting revisions the store has
// deleted: surplus revisions found after writes answered 202.
func (s *Store) ConflictsRemoved() int64 { return s.conflictsRemoved.Load() }

// idLocks serialises the Store calls of one process that write the same
// document. On a cluster, concurrent creates of one document with the same
// content can each reach some copies first; CouchDB then answers each 202
// and cannot tell which came first, since their revisions are identical (by
// design: see updatedOf). Taken one after the other, the first is stored
// on every copy before the next is sent, which every copy refuses: exactly
// one succeeds, as on a single node. Writers in different processes can
// still both succeed; the document is one, with one revision.
type idLocks struct {
	mu sync.Mutex
	m  map[string]*idLock
}

type idLock struct {
	ch   chan struct{}
	refs int
}

// lock takes id's lock, or fails when ctx ends first.
func (l *idLocks) lock(ctx context.Context, id string) (unlock func(), err error) {
	l.mu.Lock()
	if l.m == nil {
		l.m = map[string]*idLock{}
	}
	k := l.m[id]
	if k == nil {
		k = &idLock{ch: make(chan struct{}, 1)}
		l.m[id] = k
	}
	k.refs++
	l.mu.Unlock()
	select {
	case k.ch <- struct{}{}:
		return func() { <-k.ch; l.release(id, k) }, nil
	case <-ctx.Done():
		l.release(id, k)
		return nil, ctx.Err()
	}
}

func (l *idLocks) release(id string, k *idLock) {
	l.mu.Lock()
	if k.refs--; k.refs == 0 {
		delete(l.m, id)
	}
	l.mu.Unlock()
}
