package persister_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/go-whisk/activationstore/internal/kafkatest"
	"github.com/go-whisk/activationstore/kafkastore"
	"github.com/go-whisk/activationstore/kafkastore/persister"
	"github.com/go-whisk/activationstore/primary/memory"
	"github.com/go-whisk/activationstore/store"
)

func ExampleNew() {
	b, err := kafkatest.New() // an in-process broker; use your brokers' addresses instead
	if err != nil {
		log.Fatal(err)
	}
	defer b.Close()
	primary := memory.New() // e.g. couchdb.New(ctx, url, "whisk_local_activations")

	// Invokers and controllers publish to Kafka instead of writing the
	// database inline.
	ks, err := kafkastore.New(primary, kafkastore.WithBrokers(b.Addr()))
	if err != nil {
		log.Fatal(err)
	}
	defer ks.Close()
	start := time.UnixMilli(1_700_000_000_000)
	a := &store.Activation{
		Namespace: "guest", Name: "hello", Subject: "guest-subject",
		ActivationID: "a1b2c3d4e5f60718293a4b5c6d7e8f90",
		Start:        start, End: start.Add(12 * time.Millisecond),
		Response: store.Response{StatusCode: store.StatusSuccess, Result: []byte(`{"greeting":"hi"}`)},
		Version:  store.DefaultVersion,
	}
	if _, err := ks.Store(context.Background(), a, store.UserContext{}); err != nil {
		log.Fatal(err)
	}

	// The persister follows every topic matching ^completed.* (the store's
	// completed-others, the invokers' completed<N>) and writes the records
	// to the primary in batches, committing only what is persisted.
	// The connection settings are kafkastore's, shared with the Store.
	p, err := persister.New(primary, kafkastore.WithBrokers(b.Addr()), persister.WithGroupID("activation-persister"))
	if err != nil {
		log.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	for p.Stats().Persisted == 0 {
		time.Sleep(10 * time.Millisecond)
	}
	cancel() // graceful shutdown: commits, leaves the group
	if err := <-done; err != nil {
		log.Fatal(err)
	}

	got, err := primary.Get(context.Background(), "guest", a.ActivationID, store.UserContext{})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(got.DocID(), string(got.Response.Result))
	// Output: guest/a1b2c3d4e5f60718293a4b5c6d7e8f90 {"greeting":"hi"}
}
