package searchtest_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/go-whisk/activationstore/internal/searchtest"
)

// A test gets the binary's shared server and names its indices with a
// prefix of its own; TestMain stops the server.
func ExampleStart() {
	var t testing.TB // the test's
	srv := searchtest.Start(t)
	index := srv.IndexPrefix(t) + "guest"
	srv.MustDo(t, http.MethodPut, "/"+index, []byte(`{"settings":{"number_of_shards":1,"number_of_replicas":0}}`))
	_ = srv.URL() // give it to the client under test, with srv.Username(), srv.CAFile()
}

// A test of node loss starts a cluster of its own.
func ExampleStartCluster() {
	var t testing.TB // the test's
	c := searchtest.StartCluster(t, 2)
	victim := 1 - c.ClusterManager() // the cluster keeps a manager
	if err := c.Kill(victim); err != nil {
		t.Fatal(err)
	}
	// … writes through c.URL(1 - victim) …
	if err := c.Restart(t.Context(), victim); err != nil {
		t.Fatal(err)
	}
	c.WaitForStatus(victim, "green", time.Minute)
}
