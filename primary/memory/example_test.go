package memory_test

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/go-whisk/activationstore/primary/memory"
	"github.com/go-whisk/activationstore/store"
)

func ExampleNew() {
	ctx := context.Background()
	s := memory.New()
	start := time.UnixMilli(1_700_000_000_000)
	for i, id := range []string{"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa1", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa2"} {
		_, err := s.Store(ctx, &store.Activation{
			Namespace: "guest", Name: "hello", Subject: "guest-subject", ActivationID: id,
			Start: start.Add(time.Duration(i) * time.Second), End: start.Add(time.Duration(i)*time.Second + 5*time.Millisecond),
			Response: store.Response{StatusCode: store.StatusSuccess, Result: json.RawMessage(`{"greeting":"hi"}`)},
			Version:  store.DefaultVersion,
		}, store.UserContext{})
		if err != nil {
			panic(err)
		}
	}
	newest, _ := s.List(ctx, store.Query{Namespace: "guest", Name: "hello", Limit: 1}, store.UserContext{})
	n, _ := s.Count(ctx, store.Query{Namespace: "guest"}, store.UserContext{})
	fmt.Println(newest[0].ActivationID, n)
	// Output: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa2 2
}
