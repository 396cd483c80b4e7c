package elasticsearch_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/go-whisk/activationstore/internal/searchtest"
	"github.com/go-whisk/activationstore/primary/elasticsearch"
	"github.com/go-whisk/activationstore/store"
	"github.com/go-whisk/activationstore/store/storetest"
)

// exampleURL is the server of the examples, which have no *testing.T:
// TestExampleNewServer, which runs before them and whose name every -run
// pattern that selects ExampleNew matches, starts it.
var exampleURL string

func TestExampleNewServer(t *testing.T) {
	exampleURL = searchtest.Start(t).URL()
	require.NotEmpty(t, exampleURL)
}

func TestMain(m *testing.M) { searchtest.Main(m) }

// newStore connects to the test server with indices of the test's own.
func newStore(t testing.TB, srv *searchtest.Server, opts ...elasticsearch.Option) *elasticsearch.Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	opts = append([]elasticsearch.Option{elasticsearch.WithIndexPattern(srv.IndexPrefix(t) + "%s")}, opts...)
	s, err := elasticsearch.New(ctx, srv.URL(), opts...)
	require.NoError(t, err, "elasticsearch.New(%s)", srv)
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func TestConformance(t *testing.T) {
	srv := searchtest.Start(t)
	s := newStore(t, srv)
	t.Logf("server %s %s", s.Server().Distribution, s.Server().Version)
	storetest.Run(t, func(t *testing.T) store.Store { return s })
}
