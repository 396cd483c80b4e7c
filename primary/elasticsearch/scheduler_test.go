package elasticsearch_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/go-whisk/activationstore/internal/searchtest"
	"github.com/go-whisk/activationstore/primary/elasticsearch"
	"github.com/go-whisk/activationstore/store"
)

// schedulerQuery is the search OpenWhisk's scheduler sends
// (ElasticSearchDurationChecker, elastic4s): a bool "must" of match
// queries and a range on @timestamp, with the average duration.
func schedulerQuery(must ...map[string]any) []byte {
	must = append(must, map[string]any{"range": map[string]any{"@timestamp": map[string]any{"gte": "now-3600s"}}})
	b, _ := json.Marshal(map[string]any{
		"size":  0,
		"query": map[string]any{"bool": map[string]any{"must": must}},
		"aggs":  map[string]any{"averageAggregation": map[string]any{"avg": map[string]any{"field": "duration"}}},
	})
	return b
}

func match(field, value string) map[string]any {
	return map[string]any{"match": map[string]any{field: map[string]any{"query": value}}}
}

// TestSchedulerQueriesFindWhatWeWrite: OpenWhisk's scheduler's two query
// shapes — annotations.binding with name for an action invoked through a
// package binding, path.keyword otherwise — find the activations this
// package wrote, in indices made by its template and in indices of
// dynamic mapping (OpenWhisk's own), with the counts and averages
// DurationStats gives. An activation whose binding annotation is an
// object is stored all the same and read back whole.
func TestSchedulerQueriesFindWhatWeWrite(t *testing.T) {
	srv := searchtest.Start(t)
	for name, opts := range map[string][]elasticsearch.Option{
		"template":        nil,
		"dynamic-mapping": {elasticsearch.WithIndexTemplate(false)},
	} {
		t.Run(name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			s := newStore(t, srv, opts...)
			now := time.Now()
			var seq int
			activation := func(durationMs int, annotations ...store.Annotation) *store.Activation {
				seq++
				start := now.Add(-time.Duration(seq) * time.Minute)
				d := int64(durationMs)
				return &store.Activation{
					Duration:  &d,
					Namespace: "guest", Name: "hello", Subject: "guest", ActivationID: fmt.Sprintf("%032x", seq),
					Start: start, End: start.Add(time.Duration(durationMs) * time.Millisecond),
					Response:    store.Response{StatusCode: store.StatusSuccess, Result: json.RawMessage(`{}`)},
					Annotations: annotations, Version: store.DefaultVersion,
				}
			}
			str := func(k, v string) store.Annotation {
				return store.Annotation{Key: k, Value: json.RawMessage(`"` + v + `"`)}
			}
			// Direct invocations of guest/hello, and invocations of the
			// package action whisk.system/utils/hello through the binding
			// guest/utils.
			direct := []*store.Activation{activation(10, str("path", "guest/hello")), activation(20, str("path", "guest/hello")), activation(30, str("path", "guest/hello"))}
			bound := []*store.Activation{
				activation(40, str("path", "whisk.system/utils/hello"), str("binding", "guest/utils")),
				activation(60, str("path", "whisk.system/utils/hello"), str("binding", "guest/utils")),
			}
			odd := activation(70, str("path", "guest/hello"), store.Annotation{Key: "binding", Value: json.RawMessage(`{"namespace":"guest","name":"utils"}`)})
			for _, a := range append(append(direct, bound...), odd) {
				_, err := s.Store(ctx, a, store.UserContext{})
				require.NoError(t, err, "Store %s (binding %s)", a.ActivationID, annotation(a, "binding"))
			}
			got, err := s.Get(ctx, "guest", odd.ActivationID, store.UserContext{})
			require.NoError(t, err)
			assert.JSONEq(t, `{"namespace":"guest","name":"utils"}`, annotation(got, "binding"), "an object binding reads back whole")

			index := strings.ReplaceAll(s.IndexPattern(), "%s", "guest")
			srv.MustDo(t, http.MethodPost, "/"+index+"/_refresh", nil)
			search := func(body []byte) (int64, float64) {
				reply := srv.MustDo(t, http.MethodPost, "/"+index+"/_search", body)
				var r struct {
					Hits struct {
						Total json.RawMessage `json:"total"`
					} `json:"hits"`
					Aggregations map[string]struct {
						Value *float64 `json:"value"`
					} `json:"aggregations"`
				}
				require.NoError(t, json.Unmarshal(reply, &r), "%s", reply)
				var total int64
				if json.Unmarshal(r.Hits.Total, &total) != nil { // 7+: {"value": n}
					var v struct{ Value int64 }
					require.NoError(t, json.Unmarshal(r.Hits.Total, &v))
					total = v.Value
				}
				avg := -1.0
				if a := r.Aggregations["averageAggregation"].Value; a != nil {
					avg = *a
				}
				return total, avg
			}

			n, avg := search(schedulerQuery(match("annotations.binding", "guest/utils"), match("name", "hello")))
			assert.EqualValues(t, 2, n, "the scheduler's binding query")
			assert.InDelta(t, 50, avg, 1e-9)
			ds, err := s.DurationStats(ctx, store.DurationQuery{Namespace: "guest", Name: "hello", Binding: "guest/utils"}, store.UserContext{})
			require.NoError(t, err)
			assert.Equal(t, n, ds.Count, "DurationStats agrees with the scheduler's binding query")

			n, avg = search(schedulerQuery(match("path.keyword", "guest/hello")))
			assert.EqualValues(t, 4, n, "the scheduler's path query (the object binding is no binding to it)")
			assert.InDelta(t, 32.5, avg, 1e-9)
			ds, err = s.DurationStats(ctx, store.DurationQuery{Namespace: "guest", Name: "hello", Action: "guest/hello"}, store.UserContext{})
			require.NoError(t, err)
			assert.Equal(t, n, ds.Count, "DurationStats agrees with the scheduler's path query")
		})
	}
}

func annotation(a *store.Activation, key string) string {
	v, _ := a.Annotation(key)
	return string(v)
}
