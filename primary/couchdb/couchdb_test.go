package couchdb_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/go-whisk/activationstore/internal/couchtest"
	"github.com/go-whisk/activationstore/primary/couchdb"
	"github.com/go-whisk/activationstore/store"
	"github.com/go-whisk/activationstore/store/storetest"
)

func TestMain(m *testing.M) { couchtest.Main(m) }

// newStore opens a store on a fresh database of the test server.
func newStore(t testing.TB, opts ...couchdb.Option) (*couchdb.Store, string) {
	t.Helper()
	base, db := couchtest.URL(t), couchtest.DBName(t)
	s, err := couchdb.New(ctxT(t), base, db, opts...)
	require.NoError(t, err, "couchdb.New")
	t.Cleanup(func() { _ = s.Close() })
	return s, db
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestConformance(t *testing.T) {
	// One database for the suite: its behaviours work in namespaces of
	// their own, and sharing keeps the view index work small.
	s, _ := newStore(t)
	storetest.Run(t, func(t *testing.T) store.Store { return s })
}

var idSeq atomic.Uint64

func newID() string {
	return fmt.Sprintf("%016x%016x", uint64(time.Now().UnixNano()), idSeq.Add(1))
}

// activation returns a valid activation of ns/name starting at start (ms).
func activation(ns, name string, startMs int64) *store.Activation {
	d := int64(10)
	return &store.Activation{
		Namespace:    ns,
		Name:         name,
		Subject:      "guest-subject",
		ActivationID: newID(),
		Start:        time.UnixMilli(startMs).UTC(),
		End:          time.UnixMilli(startMs + d).UTC(),
		Response:     store.Response{StatusCode: store.StatusSuccess, Result: json.RawMessage(`{"ok":true}`)},
		Logs:         []string{"line"},
		Version:      store.DefaultVersion,
		Annotations:  []store.Annotation{{Key: "path", Value: json.RawMessage(`"` + ns + `/` + name + `"`)}},
		Duration:     &d,
	}
}
