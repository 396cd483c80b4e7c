package couchdb_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log"
	"time"

	"github.com/go-whisk/activationstore/internal/couchtest"
	"github.com/go-whisk/activationstore/primary/couchdb"
	"github.com/go-whisk/activationstore/store"
)

func ExampleNew() {
	ctx := context.Background()
	// serverURL is e.g. "http://admin:secret@127.0.0.1:5984"; the database
	// and OpenWhisk's design documents are created when missing.
	s, err := couchdb.New(ctx, serverURL(), exampleDB(), couchdb.WithTimeout(10*time.Second))
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()

	a := &store.Activation{
		Namespace:    "guest",
		Name:         "hello",
		Subject:      "guest-subject",
		ActivationID: "a1b2c3d4e5f60718293a4b5c6d7e8f90",
		Start:        time.UnixMilli(1700000000000),
		End:          time.UnixMilli(1700000000042),
		Response:     store.Response{StatusCode: store.StatusSuccess, Result: json.RawMessage(`{"greeting":"Hello!"}`)},
		Version:      store.DefaultVersion,
	}
	info, err := s.Store(ctx, a, store.UserContext{})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("stored", info.ID)

	_, err = s.Store(ctx, a, store.UserContext{})
	fmt.Println("again:", err)

	list, err := s.List(ctx, store.Query{Namespace: "guest", Name: "hello"}, store.UserContext{})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("listed", len(list), list[0].ActivationID, list[0].DurationMillis(), "ms")
	// Output:
	// stored guest/a1b2c3d4e5f60718293a4b5c6d7e8f90
	// again: activation conflict: document exists: "guest/a1b2c3d4e5f60718293a4b5c6d7e8f90"
	// listed 1 a1b2c3d4e5f60718293a4b5c6d7e8f90 42 ms
}

// serverURL is the test server (or COUCHDB_URL).
func serverURL() string {
	u, err := couchtest.SharedURL()
	if err != nil {
		log.Fatal(err)
	}
	return u
}

// exampleDB is a database of its own, deleted when the tests end.
func exampleDB() string { return couchtest.TempDB("example") }
