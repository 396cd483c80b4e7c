package memory_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/go-whisk/activationstore/primary/memory"
	"github.com/go-whisk/activationstore/store"
)

const benchRecords = 100_000

var benchStart = time.UnixMilli(1_700_000_000_000)

func benchActivation(i int) *store.Activation {
	start := benchStart.Add(time.Duration(i) * time.Millisecond)
	d := int64(5)
	return &store.Activation{
		Namespace:    fmt.Sprintf("ns%d", i%100),
		Name:         fmt.Sprintf("action%d", i%10),
		Subject:      "guest-subject",
		ActivationID: fmt.Sprintf("%032x", i),
		Start:        start,
		End:          start.Add(5 * time.Millisecond),
		Response:     store.Response{StatusCode: store.StatusSuccess, Result: json.RawMessage(`{"greeting":"hello world"}`)},
		Logs:         []string{"2024-01-01T00:00:00.000Z stdout: hello"},
		Version:      store.DefaultVersion,
		Annotations:  []store.Annotation{{Key: "kind", Value: json.RawMessage(`"nodejs:20"`)}},
		Duration:     &d,
	}
}

// BenchmarkStore stores into a store that grows to 100k records and beyond.
func BenchmarkStore(b *testing.B) {
	as := make([]*store.Activation, b.N)
	for i := range as {
		as[i] = benchActivation(i)
	}
	s := memory.New()
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		if _, err := s.Store(ctx, as[i], store.UserContext{}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkList lists one page from a store of 100k records in 100
// namespaces: the indexes make it independent of the total.
func BenchmarkList(b *testing.B) {
	s := memory.New()
	ctx := context.Background()
	for i := range benchRecords {
		if _, err := s.Store(ctx, benchActivation(i), store.UserContext{}); err != nil {
			b.Fatal(err)
		}
	}
	for _, bc := range []struct {
		name string
		q    store.Query
	}{
		{"namespace/limit30", store.Query{Namespace: "ns7", Limit: 30}},
		{"name/limit30", store.Query{Namespace: "ns7", Name: "action7", Limit: 30}},
		{"namespace/since-upto/docs", store.Query{Namespace: "ns7", Since: benchStart.Add(50 * time.Second), Upto: benchStart.Add(60 * time.Second), Limit: 30, IncludeDocs: true}},
		{"count/namespace", store.Query{Namespace: "ns7"}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if bc.name[:5] == "count" {
					n, err := s.Count(ctx, bc.q, store.UserContext{})
					if err != nil || n != benchRecords/100 {
						b.Fatalf("count = %d, %v", n, err)
					}
					continue
				}
				got, err := s.List(ctx, bc.q, store.UserContext{})
				if err != nil || len(got) == 0 {
					b.Fatalf("list = %d, %v", len(got), err)
				}
			}
		})
	}
}
