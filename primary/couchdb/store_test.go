package couchdb_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/go-whisk/activationstore/codec"
	"github.com/go-whisk/activationstore/internal/couchtest"
	"github.com/go-whisk/activationstore/internal/faultproxy"
	"github.com/go-whisk/activationstore/internal/logtest"
	"github.com/go-whisk/activationstore/primary/couchdb"
	"github.com/go-whisk/activationstore/store"
)

var uc = store.UserContext{}

func TestStoreBatchMixedOutcomes(t *testing.T) {
	rec := &recorder{}
	s, _ := newStore(t, couchdb.WithHTTPClient(rec.client()), couchdb.WithBatchLimits(4, 1<<20))
	ctx := ctxT(t)
	existing := activation("batchns", "act", 1000)
	_, err := s.Store(ctx, existing, uc)
	require.NoError(t, err)

	fresh := make([]*store.Activation, 8)
	for i := range fresh {
		fresh[i] = activation("batchns", "act", int64(2000+i))
	}
	bad := activation("batchns", "act", 3000)
	bad.ActivationID = "not-hex"
	dupInBatch := fresh[1].Clone()
	batch := []*store.Activation{fresh[0], existing, fresh[1], bad, fresh[2], fresh[3], dupInBatch, fresh[4], fresh[5], fresh[6], fresh[7]}

	rec.reset()
	res, err := s.StoreBatch(ctx, batch, uc)
	require.NoError(t, err)
	require.Len(t, res, len(batch))
	bulkRequests := 0
	for _, r := range rec.requests() {
		if strings.HasSuffix(r.URL.Path, "/_bulk_docs") {
			bulkRequests++
		}
	}
	assert.Equal(t, 3, bulkRequests, "10 valid documents at 4 per request")

	for i, r := range res {
		switch batch[i] {
		case existing, dupInBatch:
			// A nil error fails here, and the check below is skipped:
			// a test fails, it does not panic.
			if assert.ErrorIs(t, r.Err, store.ErrConflict, "result %d", i) {
				assert.ErrorContains(t, r.Err, batch[i].DocID(), "the conflict names the document")
			}
		case bad:
			assert.ErrorIs(t, r.Err, store.ErrInvalid, "result %d", i)
		default:
			require.NoError(t, r.Err, "result %d", i)
			assert.Equal(t, batch[i].DocID(), r.DocInfo.ID)
			assert.NotEmpty(t, r.DocInfo.Rev)
			got, err := s.Get(ctx, batch[i].Namespace, batch[i].ActivationID, uc)
			require.NoError(t, err)
			assert.Equal(t, batch[i], got)
		}
	}
	n, err := s.Count(ctx, store.Query{Namespace: "batchns"}, uc)
	require.NoError(t, err)
	assert.Equal(t, 9, n)
}

func TestStoreBatchSplitsByBytes(t *testing.T) {
	rec := &recorder{}
	s, _ := newStore(t, couchdb.WithHTTPClient(rec.client()), couchdb.WithBatchLimits(1000, 3000))
	ctx := ctxT(t)
	var batch []*store.Activation
	for i := range 6 {
		a := activation("bytesns", "act", int64(1000+i))
		a.Logs = []string{strings.Repeat("x", 1000)} // ~1.4 KB documents: two per request
		batch = append(batch, a)
	}
	big := activation("bytesns", "act", 2000)
	big.Logs = []string{strings.Repeat("y", 5000)} // over the limit alone
	batch = append(batch, big)
	rec.reset()
	res, err := s.StoreBatch(ctx, batch, uc)
	require.NoError(t, err)
	for i, r := range res {
		require.NoError(t, r.Err, i)
	}
	var bulk int
	for _, r := range rec.requests() {
		if strings.HasSuffix(r.URL.Path, "/_bulk_docs") {
			bulk++
		}
	}
	assert.Equal(t, 4, bulk)
	n, err := s.Count(ctx, store.Query{Namespace: "bytesns"}, uc)
	require.NoError(t, err)
	assert.Equal(t, 7, n)
}

func TestStoreBatchEmptyAndAllInvalid(t *testing.T) {
	rec := &recorder{}
	s, _ := newStore(t, couchdb.WithHTTPClient(rec.client()))
	rec.reset()
	res, err := s.StoreBatch(ctxT(t), nil, uc)
	require.NoError(t, err)
	assert.Empty(t, res)
	bad := activation("ns", "act", 1)
	bad.Namespace = "_design"
	res, err = s.StoreBatch(ctxT(t), []*store.Activation{bad, nil}, uc)
	require.NoError(t, err)
	require.Len(t, res, 2)
	assert.ErrorIs(t, res[0].Err, store.ErrInvalid)
	assert.ErrorIs(t, res[1].Err, store.ErrInvalid)
	assert.Empty(t, rec.requests(), "nothing to send, nothing sent")
}

// Invalid input is rejected before any request.
func TestInvalidInputSendsNothing(t *testing.T) {
	rec := &recorder{}
	s, _ := newStore(t, couchdb.WithHTTPClient(rec.client()))
	ctx := ctxT(t)
	rec.reset()
	a := activation("ns", "act", 1)
	a.Namespace = "_design/x"
	_, err := s.Store(ctx, a, uc)
	assert.ErrorIs(t, err, store.ErrInvalid)
	var ie *store.InvalidError
	require.ErrorAs(t, err, &ie)
	assert.Equal(t, "namespace", ie.Field)
	_, err = s.Get(ctx, "ns", "../../_all_docs", uc)
	assert.ErrorIs(t, err, store.ErrInvalid)
	assert.ErrorIs(t, s.Delete(ctx, "_users", "0123456789abcdef0123456789abcdef", uc), store.ErrInvalid)
	_, err = s.List(ctx, store.Query{Namespace: "ns", Limit: -1}, uc)
	assert.ErrorIs(t, err, store.ErrInvalid)
	_, err = s.Count(ctx, store.Query{Namespace: "ns", Name: "a/b/c"}, uc)
	assert.ErrorIs(t, err, store.ErrInvalid)
	assert.Empty(t, rec.requests())
}

func TestGetDeleteNotFound(t *testing.T) {
	s, _ := newStore(t)
	ctx := ctxT(t)
	a := activation("ns", "act", 1)
	_, err := s.Get(ctx, a.Namespace, a.ActivationID, uc)
	assert.ErrorIs(t, err, store.ErrNotFound)
	assert.ErrorContains(t, err, a.DocID())
	assert.ErrorIs(t, s.Delete(ctx, a.Namespace, a.ActivationID, uc), store.ErrNotFound)

	_, err = s.Store(ctx, a, uc)
	require.NoError(t, err)
	_, err = s.Store(ctx, a, uc)
	assert.ErrorIs(t, err, store.ErrConflict)
	require.NoError(t, s.Delete(ctx, a.Namespace, a.ActivationID, uc))
	assert.ErrorIs(t, s.Delete(ctx, a.Namespace, a.ActivationID, uc), store.ErrNotFound)
	_, err = s.Get(ctx, a.Namespace, a.ActivationID, uc)
	assert.ErrorIs(t, err, store.ErrNotFound)
	assert.False(t, couchdb.IsTransient(err))
}

// A namespace with characters that need escaping stays one path segment.
func TestDocumentIDEscaping(t *testing.T) {
	s, db := newStore(t)
	ctx := ctxT(t)
	a := activation("guest@example.com/my pkg&co", "act", 1)
	_, err := s.Store(ctx, a, uc)
	require.NoError(t, err)
	got, err := s.Get(ctx, a.Namespace, a.ActivationID, uc)
	require.NoError(t, err)
	assert.Equal(t, a, got)
	status, _, err := couchtest.Do(ctx, http.MethodGet, couchtest.URL(t), "/"+db+"/"+url.PathEscape(a.DocID()), nil)
	require.NoError(t, err)
	assert.Equal(t, http.StatusOK, status, "document id is namespace/activationId")
	require.NoError(t, s.Delete(ctx, a.Namespace, a.ActivationID, uc))
}

func TestGetOtherEntityOrCorruptDocument(t *testing.T) {
	s, db := newStore(t)
	ctx := ctxT(t)
	put := func(id, body string) {
		status, reply, err := couchtest.Do(ctx, http.MethodPut, couchtest.URL(t), "/"+db+"/"+url.PathEscape(id), []byte(body))
		require.NoError(t, err)
		require.Equal(t, http.StatusCreated, status, "%s", reply)
	}
	id1, id2 := newID(), newID()
	put("ns/"+id1, `{"entityType":"action","namespace":"ns","name":"x","version":"0.0.1","exec":{"kind":"nodejs:20"}}`)
	_, err := s.Get(ctx, "ns", id1, uc)
	require.ErrorIs(t, err, couchdb.ErrNotActivation)
	assert.ErrorContains(t, err, `"action"`)

	put("ns/"+id2, `{"entityType":"activation","namespace":"ns","activationId":"`+id2+`"}`)
	_, err = s.Get(ctx, "ns", id2, uc)
	require.ErrorIs(t, err, codec.ErrMalformed)
	assert.ErrorContains(t, err, "corrupted")
	assert.NotErrorIs(t, err, store.ErrNotFound)
}

// Several processes starting at once on a new database all succeed.
func TestConcurrentNew(t *testing.T) {
	base, db := couchtest.URL(t), couchtest.DBName(t)
	const n = 8
	var wg sync.WaitGroup
	errs := make([]error, n)
	stores := make([]*couchdb.Store, n)
	for i := range n {
		wg.Go(func() {
			stores[i], errs[i] = couchdb.New(ctxT(t), base, db)
		})
	}
	wg.Wait()
	for i := range n {
		require.NoError(t, errs[i], "New #%d", i)
		defer stores[i].Close()
	}
	ctx := ctxT(t)
	a := activation("ns", "act", 1)
	_, err := stores[0].Store(ctx, a, uc)
	require.NoError(t, err)
	for i := range n {
		got, err := stores[i].List(ctx, store.Query{Namespace: "ns"}, uc)
		require.NoError(t, err)
		require.Len(t, got, 1)
	}
	// And once more on the existing database.
	again, err := couchdb.New(ctx, base, db)
	require.NoError(t, err)
	require.NoError(t, again.Close())
}

func TestNewRejectsBadArguments(t *testing.T) {
	ctx := ctxT(t)
	_, err := couchdb.New(ctx, couchtest.URL(t), "Bad_Name")
	assert.ErrorIs(t, err, store.ErrInvalid)
	_, err = couchdb.New(ctx, "http://user:pa ss%zz@127.0.0.1:1", "db")
	require.Error(t, err)
	assert.NotContains(t, err.Error(), "pa ss")
	_, err = couchdb.New(ctx, "ftp://127.0.0.1", "db")
	require.Error(t, err)
	_, err = couchdb.New(ctx, couchtest.URL(t), "db", couchdb.WithBatchLimits(0, 10))
	assert.ErrorContains(t, err, "maxDocs")
	_, err = couchdb.New(ctx, couchtest.URL(t), "db", couchdb.WithTimeout(-time.Second))
	assert.ErrorContains(t, err, "WithTimeout")
}

// proxied returns a store that reaches the test server through a fault
// proxy, with credentials in the URL, logging into logs.
func proxied(t *testing.T, timeout time.Duration) (*couchdb.Store, *faultproxy.Proxy, *logtest.Buffer, *recorder) {
	t.Helper()
	base, err := url.Parse(couchtest.URL(t))
	require.NoError(t, err)
	p := faultproxy.Start(t, base.Host)
	u := *base
	u.Host = p.Addr()
	if u.User == nil { // the bundled server ignores credentials; a real CouchDB has its own
		u.User = url.UserPassword("admin", secret)
	}
	logs := &logtest.Buffer{}
	rec := &recorder{}
	// The database and its design documents are made first, directly with
	// the default timeout: on a loaded cluster that takes longer than the
	// short timeouts these tests put on the proxied store.
	logger := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	db := couchtest.DBName(t)
	direct, err := couchdb.New(ctxT(t), couchtest.URL(t), db, couchdb.WithLogger(logger))
	require.NoError(t, err)
	require.NoError(t, direct.Close())
	s, err := couchdb.New(ctxT(t), u.String(), db,
		couchdb.WithTimeout(timeout),
		couchdb.WithHTTPClient(rec.client()),
		couchdb.WithLogger(logger))
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	return s, p, logs, rec
}

// password is the password the tests send: COUCHDB_URL's, or secret.
func password(t *testing.T) string {
	base, err := url.Parse(couchtest.URL(t))
	require.NoError(t, err)
	if pw, ok := base.User.Password(); ok {
		return pw
	}
	return secret
}

const secret = "sup3r-s3cret-pw"

// allOps runs every operation once and returns their errors.
func allOps(ctx context.Context, s *couchdb.Store) map[string]error {
	a := activation("ns", "act", 5)
	errs := map[string]error{}
	_, errs["Store"] = s.Store(ctx, a, uc)
	_, errs["StoreBatch"] = s.StoreBatch(ctx, []*store.Activation{activation("ns", "act", 6), activation("ns", "act", 7)}, uc)
	_, errs["Get"] = s.Get(ctx, a.Namespace, a.ActivationID, uc)
	errs["Delete"] = s.Delete(ctx, a.Namespace, a.ActivationID, uc)
	_, errs["List"] = s.List(ctx, store.Query{Namespace: "ns"}, uc)
	_, errs["Count"] = s.Count(ctx, store.Query{Namespace: "ns"}, uc)
	return errs
}

func requireTransient(t *testing.T, errs map[string]error, cause error) {
	t.Helper()
	for op, err := range errs {
		var te *couchdb.TransientError
		require.ErrorAs(t, err, &te, "%s: %v", op, err)
		assert.True(t, couchdb.IsTransient(err), op)
		assert.NotErrorIs(t, err, store.ErrNotFound, op)
		if cause != nil {
			assert.ErrorIs(t, err, cause, op)
		}
		assert.ErrorContains(t, err, "retry", op)
		t.Logf("%s: %v", op, err)
	}
}

// A server that goes down gives transient errors at once; one that hangs
// gives them within the timeout; both recover.
func TestServerDownOrHanging(t *testing.T) {
	const timeout = 500 * time.Millisecond
	s, p, logs, _ := proxied(t, timeout)
	ctx := ctxT(t)
	for op, err := range allOps(ctx, s) {
		if op != "Get" && op != "Delete" { // the record was deleted by then, or not
			require.NoError(t, err, op)
		}
	}

	p.Drop()
	start := time.Now()
	errs := allOps(ctx, s)
	requireTransient(t, errs, nil)
	assert.Less(t, time.Since(start), 6*timeout, "refused connections fail fast")
	var te *couchdb.TransientError
	require.ErrorAs(t, errs["Store"], &te)
	assert.Equal(t, 0, te.StatusCode, "no response")

	require.NoError(t, p.Restore())
	p.Stall()
	start = time.Now()
	_, err := s.Store(ctx, activation("ns", "act", 8), uc)
	elapsed := time.Since(start)
	requireTransient(t, map[string]error{"Store": err}, context.DeadlineExceeded)
	assert.Less(t, elapsed, timeout+2*time.Second, "bounded by WithTimeout, not hanging")
	assert.GreaterOrEqual(t, elapsed, timeout-50*time.Millisecond)

	require.NoError(t, p.Restore())
	_, err = s.Store(ctx, activation("ns", "act", 9), uc)
	require.NoError(t, err, "recovers when the server is back")
	assert.NotContains(t, logs.String(), secret)
}

// The caller's own deadline is honoured too, and reported as such.
func TestCallerDeadline(t *testing.T) {
	s, p, _, _ := proxied(t, time.Minute)
	p.Stall()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := s.List(ctx, store.Query{Namespace: "ns"}, uc)
	assert.Less(t, time.Since(start), 3*time.Second)
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	assert.True(t, couchdb.IsTransient(err))
}

// Credentials in the URL are sent as Basic auth, and appear in no error and
// no log line, whatever fails.
func TestCredentialsNeverShown(t *testing.T) {
	s, p, logs, rec := proxied(t, 300*time.Millisecond)
	ctx := ctxT(t)
	var texts []string
	collect := func(errs map[string]error) {
		for op, err := range errs {
			if err != nil {
				texts = append(texts, op+": "+err.Error(), fmt.Sprintf("%+v", err), fmt.Sprintf("%#v", err))
				for e := errors.Unwrap(err); e != nil; e = errors.Unwrap(e) {
					texts = append(texts, e.Error())
				}
			}
		}
	}
	collect(allOps(ctx, s))
	p.Drop()
	collect(allOps(ctx, s))
	require.NoError(t, p.Restore())
	p.Stall()
	collect(allOps(ctx, s))

	// New itself, against a dead server and a hanging one.
	dead := "http://admin:" + secret + "@" + p.Addr()
	_, err := couchdb.New(ctx, dead, "db", couchdb.WithTimeout(200*time.Millisecond))
	require.Error(t, err)
	assert.True(t, couchdb.IsTransient(err), "%v", err)
	collect(map[string]error{"New": err})
	p.Drop()
	_, err = couchdb.New(ctx, dead, "db", couchdb.WithTimeout(200*time.Millisecond))
	require.Error(t, err)
	collect(map[string]error{"New": err})

	require.NotEmpty(t, texts)
	require.Contains(t, logs.String(), "created database", "the logger is wired")
	for _, pw := range []string{secret, password(t)} {
		for _, txt := range texts {
			assert.NotContains(t, txt, pw)
			assert.NotContains(t, txt, url.QueryEscape(pw))
		}
		assert.NotContains(t, logs.String(), pw)
	}

	var authed int
	for _, r := range rec.requests() {
		if user, pass, ok := r.BasicAuth(); ok && user == "admin" && pass == secret {
			authed++
		}
		assert.Nil(t, r.URL.User, "credentials must not travel in the URL")
	}
	if base, _ := url.Parse(couchtest.URL(t)); base.User == nil {
		assert.Positive(t, authed, "Basic auth sent")
	}
}

func TestTransientErrorText(t *testing.T) {
	err := &couchdb.TransientError{Op: "store", ID: "ns/x", StatusCode: 503, Err: errors.New("boom")}
	assert.True(t, couchdb.IsTransient(fmt.Errorf("wrapped: %w", err)))
	assert.False(t, couchdb.IsTransient(store.ErrConflict))
	var tr interface{ Transient() bool }
	require.ErrorAs(t, err, &tr)
	assert.True(t, tr.Transient())
	assert.ErrorContains(t, err, `store "ns/x"`)
	assert.ErrorContains(t, err, "HTTP 503")
}

func TestStoredEqualsRetrieved(t *testing.T) {
	s, _ := newStore(t)
	ctx := ctxT(t)
	a := activation("ns", "act", 1)
	a.Response.Result = json.RawMessage(`{"z":1,"a":[1.5,"Proteína"]}`)
	a.Logs = []string{"Proteína ☃"}
	_, err := s.Store(ctx, a, uc)
	require.NoError(t, err)
	got, err := s.Get(ctx, "ns", a.ActivationID, uc)
	require.NoError(t, err)
	assert.Equal(t, a, got)
}

// A database deleted under a running store gives errors that say so, not
// "activation not found".
func TestDatabaseDeletedUnderStore(t *testing.T) {
	s, db := newStore(t)
	ctx := ctxT(t)
	require.NoError(t, couchtest.DeleteDB(ctx, couchtest.URL(t), db))
	_, err := s.Store(ctx, activation("ns", "act", 1), uc)
	require.Error(t, err)
	assert.NotErrorIs(t, err, store.ErrNotFound)
	assert.False(t, couchdb.IsTransient(err))
	assert.ErrorContains(t, err, "does not exist")
	_, err = s.StoreBatch(ctx, []*store.Activation{activation("ns", "act", 2)}, uc)
	assert.ErrorContains(t, err, "does not exist")
	_, err = s.List(ctx, store.Query{Namespace: "ns"}, uc)
	assert.ErrorContains(t, err, "missing")
	assert.NotErrorIs(t, err, store.ErrNotFound)
}
