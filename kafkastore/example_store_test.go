package kafkastore_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log"
	"os"
	"time"

	"github.com/go-whisk/activationstore/internal/activationtest"
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

func ExampleWithSpool() {
	broker, err := kafkatest.New()
	if err != nil {
		log.Fatal(err)
	}
	defer broker.Close()
	dir, err := os.MkdirTemp("", "spool") // in production: a volume that outlives the container
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	s, err := kafkastore.New(memory.New(),
		kafkastore.WithBrokers(broker.Addr()),
		kafkastore.WithSpool(dir, kafkastore.WithSpoolMaxBytes(256<<20)),
	)
	if err != nil {
		log.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for range 3 {
		// Returns once the record is fdatasynced in dir, whatever Kafka does.
		if _, err := s.Store(ctx, activationtest.New("guest"), store.UserContext{}); err != nil {
			log.Fatal(err)
		}
	}
	// An invoker's ack takes the same path.
	if err := s.PublishAck(ctx, "completed0", []byte("0123"), []byte(`{"activationId":"0123"}`)); err != nil {
		log.Fatal(err)
	}
	fmt.Println("spooled:", s.Stats().Spooled)
	// Close gives the publisher time to send what is spooled while Kafka
	// takes it; what is left is published by the next Store on dir.
	if err := s.Close(); err != nil {
		log.Fatal(err)
	}
	st := s.Stats()
	fmt.Println("published:", st.Published, "left in the spool:", st.Spool.Records)
	// Output:
	// spooled: 4
	// published: 4 left in the spool: 0
}
