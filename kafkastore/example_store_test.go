package kafkastore_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log"
	"time"

	"github.com/go-whisk/activationstore/internal/kafkatest"
	"github.com/go-whisk/activationstore/kafkastore"
	"github.com/go-whisk/activationstore/primary/memory"
	"github.com/go-whisk/activationstore/store"
)

func ExampleNew() {
	// An in-process broker for the example; use your cluster's addresses.
	broker, err := kafkatest.New()
	if err != nil {
		log.Fatal(err)
	}
	defer broker.Close()

	primary := memory.New() // reads go here; in production, primary/couchdb
	s, err := kafkastore.New(primary,
		kafkastore.WithBrokers(broker.Addr()),
		kafkastore.WithTopic("completed-others"),
	)
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()

	start := time.UnixMilli(1_700_000_000_000)
	a := &store.Activation{
		Namespace:    "guest",
		Name:         "hello",
		Subject:      "guest-subject",
		ActivationID: "0123456789abcdef0123456789abcdef",
		Start:        start,
		End:          start.Add(12 * time.Millisecond),
		Response:     store.Response{StatusCode: store.StatusSuccess, Result: json.RawMessage(`{"greeting":"hi"}`)},
		Version:      "0.0.1",
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	info, err := s.Store(ctx, a, store.UserContext{})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("published %s (rev %q)\n", info.ID, info.Rev)
	fmt.Println("published records:", s.Stats().Published)

	// The persister writes the primary; until then reads do not find it.
	_, err = s.Get(ctx, "guest", a.ActivationID, store.UserContext{})
	fmt.Println("not yet persisted:", err != nil)
	// Output:
	// published guest/0123456789abcdef0123456789abcdef (rev "")
	// published records: 1
	// not yet persisted: true
}
