package elasticsearch_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log"
	"time"

	"github.com/go-whisk/activationstore/primary/elasticsearch"
	"github.com/go-whisk/activationstore/store"
)

func ExampleNew() {
	ctx := context.Background()
	// serverURL is e.g. "http://elastic:secret@127.0.0.1:9200"; the index
	// template for the pattern is installed, indices are made on write.
	s, err := elasticsearch.New(ctx, serverURL(), elasticsearch.WithIndexPattern(examplePattern()))
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()

	d := int64(42)
	a := &store.Activation{
		Namespace:    "guest",
		Name:         "hello",
		Subject:      "guest-subject",
		ActivationID: "a1b2c3d4e5f60718293a4b5c6d7e8f90",
		Start:        time.UnixMilli(1700000000000),
		End:          time.UnixMilli(1700000000042),
		Response:     store.Response{StatusCode: store.StatusSuccess, Result: json.RawMessage(`{"greeting":"Hello!"}`)},
		Version:      store.DefaultVersion,
		Duration:     &d,
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

	stats, err := s.DurationStats(ctx, store.DurationQuery{Namespace: "guest", Action: "guest/hello"}, store.UserContext{})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("average", *stats.Average, "ms over", stats.Count)
	// Output:
	// stored guest/a1b2c3d4e5f60718293a4b5c6d7e8f90
	// again: activation conflict: document exists: "guest/a1b2c3d4e5f60718293a4b5c6d7e8f90"
	// listed 1 a1b2c3d4e5f60718293a4b5c6d7e8f90 42 ms
	// average 42 ms over 1
}

// serverURL is the test server (or ELASTICSEARCH_URL).
func serverURL() string {
	if exampleURL == "" {
		log.Fatal("no test server: run TestExampleNewServer too (-run ExampleNew selects it)")
	}
	return exampleURL
}

func examplePattern() string { return fmt.Sprintf("example-%d-%%s", time.Now().UnixNano()) }
