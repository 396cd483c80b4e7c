package couchdb

import (
	"context"
	"embed"
	"encoding/json"
	"fmt"
	"io/fs"
	"net/http"
	"path"
	"sort"
	"strings"

	"github.com/go-kivik/kivik/v4"

	"github.com/go-whisk/activationstore/store"
)

// ddocFS holds OpenWhisk's design documents for the activations database,
// verbatim from ansible/files/ at OpenWhisk master: whisks.v2.1.0, both
// filters views (whisks-filters.v2.1.0 and v2.1.1), activations (byDate)
// and logCleanup.
//
//go:embed ddocs/*.json
var ddocFS embed.FS

// designDoc is one embedded design document.
type designDoc struct {
	ID   string
	Body json.RawMessage
}

// DesignDocs returns the ids of the design documents New installs in a new
// database with the default options: the filters view is whisks-filters.v2.1.1.
func DesignDocs() []string {
	docs, err := designDocs(store.FilterViewV211)
	if err != nil {
		panic(err) // embedded at build time: cannot fail
	}
	ids := make([]string, len(docs))
	for i, d := range docs {
		ids[i] = d.ID
	}
	return ids
}

// filtersPrefix begins the id of every filters design document.
const filtersPrefix = "_design/whisks-filters."

// designDocs returns the embedded design documents, of the filters views
// only the one of version view.
func designDocs(view store.FilterView) ([]designDoc, error) {
	names, err := fs.Glob(ddocFS, "ddocs/*.json")
	if err != nil {
		return nil, err
	}
	sort.Strings(names)
	docs := make([]designDoc, 0, len(names))
	for _, name := range names {
		b, err := ddocFS.ReadFile(name)
		if err != nil {
			return nil, err
		}
		var head struct {
			ID string `json:"_id"`
		}
		if err := json.Unmarshal(b, &head); err != nil || head.ID == "" {
			return nil, fmt.Errorf("couchdb: embedded design document %s has no _id: %v", path.Base(name), err)
		}
		if strings.HasPrefix(head.ID, filtersPrefix) && head.ID != "_design/"+string(view) {
			continue
		}
		docs = append(docs, designDoc{ID: head.ID, Body: b})
	}
	return docs, nil
}

// setup creates the database and the design documents when missing. Other
// processes may do the same at the same time: "exists" answers are success.
func (s *Store) setup(ctx context.Context) error {
	if err := s.ensureDB(ctx); err != nil {
		return err
	}
	if err := s.dbInfo(ctx); err != nil {
		return err
	}
	if s.view == "" {
		view, err := s.detectFilterView(ctx)
		if err != nil {
			return err
		}
		s.view = view
	}
	docs, err := designDocs(s.view)
	if err != nil {
		return err
	}
	for _, d := range docs {
		if err := s.ensureDesignDoc(ctx, d); err != nil {
			return err
		}
	}
	return nil
}

// detectFilterView returns the newest filters view the database holds, or
// v2.1.1 when it holds none.
func (s *Store) detectFilterView(ctx context.Context) (store.FilterView, error) {
	for _, v := range []store.FilterView{store.FilterViewV211, store.FilterViewV210} {
		ok, err := s.designDocExists(ctx, "_design/"+string(v))
		if err != nil {
			return "", err
		}
		if ok {
			s.log.DebugContext(ctx, "couchdb: found filters view", "db", s.dbName, "view", string(v))
			return v, nil
		}
	}
	return store.FilterViewV211, nil
}

func (s *Store) designDocExists(ctx context.Context, id string) (bool, error) {
	ctx, cancel := s.withTimeout(ctx)
	defer cancel()
	_, err := s.db.GetRev(ctx, id)
	switch {
	case err == nil:
		return true, nil
	case kivik.HTTPStatus(err) == http.StatusNotFound:
		return false, nil
	}
	return false, s.classify(ctx, "look up design document", id, err)
}

func (s *Store) ensureDB(ctx context.Context) error {
	ctx, cancel := s.withTimeout(ctx)
	defer cancel()
	err := s.client.CreateDB(ctx, s.dbName)
	if err == nil {
		s.log.InfoContext(ctx, "couchdb: created database", "db", s.dbName)
		return nil
	}
	switch kivik.HTTPStatus(err) {
	case http.StatusPreconditionFailed: // file_exists
		return nil
	case http.StatusUnauthorized, http.StatusForbidden:
		// A user that may write documents but not create databases: fine
		// if the database is there.
		if ok, err2 := s.client.DBExists(ctx, s.dbName); err2 == nil && ok {
			return nil
		}
		return &opError{op: "create database", id: s.dbName, err: err,
			msg: "not allowed, and the database does not exist: create it, or use an admin's credentials: " + s.redact(err.Error())}
	}
	// A clustered CouchDB may answer a concurrent creation with an error
	// even though the database now exists.
	if ok, err2 := s.client.DBExists(ctx, s.dbName); err2 == nil && ok {
		return nil
	}
	return s.classify(ctx, "create database", s.dbName, err)
}

func (s *Store) ensureDesignDoc(ctx context.Context, d designDoc) error {
	ctx, cancel := s.withTimeout(ctx)
	defer cancel()
	var opts []kivik.Option
	if s.w > 0 {
		opts = append(opts, kivik.Param("w", s.w))
	}
	_, err := s.db.Put(ctx, d.ID, d.Body, opts...)
	if err == nil {
		s.log.InfoContext(ctx, "couchdb: installed design document", "db", s.dbName, "id", d.ID)
		return nil
	}
	switch kivik.HTTPStatus(err) {
	case http.StatusConflict:
		// There already. The names carry versions, so the content is the same.
		return nil
	case http.StatusUnauthorized, http.StatusForbidden:
		if _, err2 := s.db.GetRev(ctx, d.ID); err2 == nil {
			return nil
		}
		return &opError{op: "install design document", id: d.ID, err: err,
			msg: "not allowed, and it is missing: install it, or use a database admin's credentials: " + s.redact(err.Error())}
	}
	return s.classify(ctx, "install design document", d.ID, err)
}
