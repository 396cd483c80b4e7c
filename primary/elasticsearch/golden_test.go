package elasticsearch_test

import (
	"context"
	"encoding/json"
	"flag"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/go-whisk/activationstore/codec"
	"github.com/go-whisk/activationstore/internal/searchtest"
	"github.com/go-whisk/activationstore/primary/elasticsearch"
	"github.com/go-whisk/activationstore/store"
)

var update = flag.Bool("update", false, "rewrite the golden documents of the server's version")

func ptr[T any](v T) *T { return &v }

// goldenActivations are records OpenWhisk's document form holds whole
// (object or array results, annotations without init or repeats).
func goldenActivations() map[string]*store.Activation {
	start := time.UnixMilli(1_700_000_000_042).UTC()
	return map[string]*store.Activation{
		"action": {
			Namespace: "guest", Name: "hello", Subject: "guest-subject", ActivationID: "0123456789abcdef0123456789abcdef",
			Start: start, End: start.Add(1500 * time.Millisecond), Cause: "fedcba9876543210fedcba9876543210",
			Response: store.Response{StatusCode: store.StatusApplicationError,
				Result: json.RawMessage(`{"error":"boom","nested":{"n":42,"f":3.5,"arr":[1,"two",null,true]},"unicode":"héllo ☃ <&>"}`), Size: ptr[int64](77)},
			Logs:    []string{"2024-01-01T00:00:00.000Z stdout: first", "2024-01-01T00:00:00.001Z stderr: second ☃"},
			Version: "1.2.3", Publish: true,
			Annotations: []store.Annotation{
				{Key: "path", Value: json.RawMessage(`"guest/pkg/hello"`)},
				{Key: "kind", Value: json.RawMessage(`"nodejs:20"`)},
				{Key: "limits", Value: json.RawMessage(`{"concurrency":1,"logs":10,"memory":256,"timeout":60000}`)},
				{Key: "waitTime", Value: json.RawMessage(`12`)},
				{Key: "timeout", Value: json.RawMessage(`false`)},
			},
			Duration: ptr[int64](1234),
		},
		"binding": {
			Namespace: "guest", Name: "echo", Subject: "guest-subject", ActivationID: "1123456789abcdef0123456789abcdef",
			Start: time.UnixMilli(1_700_000_001_000).UTC(), End: time.UnixMilli(1_700_000_001_005).UTC(),
			Response:    store.Response{StatusCode: store.StatusSuccess, Result: json.RawMessage(`[1,2,3]`)},
			Version:     store.DefaultVersion,
			Annotations: []store.Annotation{{Key: "path", Value: json.RawMessage(`"whisk.system/utils/echo"`)}, {Key: "binding", Value: json.RawMessage(`"guest/myutils"`)}},
			Duration:    ptr[int64](5),
		},
		"trigger": {
			Namespace: "guest", Name: "mytrigger", Subject: "guest-subject", ActivationID: "2123456789abcdef0123456789abcdef",
			Start:    time.UnixMilli(0).UTC(),
			End:      store.NoEnd,
			Response: store.Response{StatusCode: store.StatusSuccess, Result: json.RawMessage(`{}`)},
			Logs:     []string{`{"statusCode":0,"success":true,"activationId":"3123456789abcdef0123456789abcdef","rule":"guest/r","action":"guest/a"}`},
			Version:  store.DefaultVersion,
		},
	}
}

// TestGoldenDocuments pins the documents written for each server version
// (testdata/<version>/), and reads them back the way OpenWhisk's
// ElasticSearchActivationStore does.
func TestGoldenDocuments(t *testing.T) {
	srv := searchtest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	updated := time.UnixMilli(1_700_000_100_000)
	s := newStore(t, srv, elasticsearch.WithClock(func() time.Time { return updated }))
	dir := filepath.Join("testdata", strings.ReplaceAll(string(srv.Version()), ".", "_"))
	for name, a := range goldenActivations() {
		t.Run(name, func(t *testing.T) {
			_, err := s.Store(ctx, a, uc)
			require.NoError(t, err)
			index := strings.ReplaceAll(s.IndexPattern(), "%s", "guest")
			_, body, err := srv.Do(ctx, http.MethodGet, "/"+index+"/_doc/"+strings.ReplaceAll(a.DocID(), "/", "%2F"), nil)
			require.NoError(t, err)
			var hit struct {
				Index  string          `json:"_index"`
				Type   string          `json:"_type"`
				ID     string          `json:"_id"`
				Source json.RawMessage `json:"_source"`
			}
			require.NoError(t, json.Unmarshal(body, &hit), "%s", body)
			assert.Equal(t, a.DocID(), hit.ID, "_id is OpenWhisk's document id")
			assert.Equal(t, index, hit.Index)
			if srv.Version().Major() == 6 && srv.Version().Distribution() == "elasticsearch" {
				assert.Equal(t, "_doc", hit.Type)
			}
			file := filepath.Join(dir, name+".json")
			var pretty map[string]any
			require.NoError(t, json.Unmarshal(hit.Source, &pretty))
			if *update {
				require.NoError(t, os.MkdirAll(dir, 0o755))
				b, _ := json.MarshalIndent(pretty, "", "  ")
				require.NoError(t, os.WriteFile(file, append(b, '\n'), 0o644))
			}
			golden, err := os.ReadFile(file)
			require.NoError(t, err, "golden document (write it with -update against %s)", srv.Version())
			assert.JSONEq(t, string(golden), string(hit.Source), "document as stored by %s", srv.Version())
			written, err := codec.MarshalElasticsearchDocument(a, updated)
			require.NoError(t, err)
			assert.Equal(t, string(written), string(hit.Source), "_source is codec's document, byte for byte")

			got := openWhiskRead(t, hit.Source)
			assertSameRecord(t, a, got)
			assert.Equal(t, codec.ElasticsearchPath(a), pretty["path"])
			assert.NotContains(t, pretty, "_id")
		})
	}
}

// openWhiskRead is OpenWhisk's deserializeHitToWhiskActivation written in
// Go: restoreResponse (the result string parsed; only an array or an
// object is kept), restoreAnnotations (the object's members as
// {"key","value"} in member order), then the WhiskActivation reader.
func openWhiskRead(t *testing.T, source []byte) *store.Activation {
	t.Helper()
	var doc map[string]json.RawMessage
	require.NoError(t, json.Unmarshal(source, &doc))
	var resp map[string]json.RawMessage
	require.NoError(t, json.Unmarshal(doc["response"], &resp))
	if r, ok := resp["result"]; ok {
		var data string
		if json.Unmarshal(r, &data) == nil && (strings.HasPrefix(data, "{") || strings.HasPrefix(data, "[")) && json.Valid([]byte(data)) {
			resp["result"] = json.RawMessage(data)
		} else {
			delete(resp, "result")
		}
	} else {
		resp["result"] = json.RawMessage(`{}`)
	}
	doc["response"], _ = json.Marshal(resp)
	var ann map[string]json.RawMessage
	arr := []map[string]json.RawMessage{}
	if json.Unmarshal(doc["annotations"], &ann) == nil {
		keys := make([]string, 0, len(ann))
		for k := range ann {
			keys = append(keys, k)
		}
		sort.Strings(keys) // spray's JsObject is a Map: order is not kept
		for _, k := range keys {
			kb, _ := json.Marshal(k)
			arr = append(arr, map[string]json.RawMessage{"key": kb, "value": ann[k]})
		}
	}
	doc["annotations"], _ = json.Marshal(arr)
	b, _ := json.Marshal(doc)
	d, err := codec.UnmarshalDocument(b)
	require.NoError(t, err, "OpenWhisk's reader accepts the document")
	return d.Activation
}

// assertSameRecord compares every field; annotations as a set (OpenWhisk's
// Parameters are a map).
func assertSameRecord(t *testing.T, want, got *store.Activation) {
	t.Helper()
	w, g := *want.Clone(), *got.Clone()
	sortAnn := func(as []store.Annotation) map[string]string {
		m := map[string]string{}
		for _, an := range as {
			var v any
			_ = json.Unmarshal(an.Value, &v)
			b, _ := json.Marshal(v)
			m[an.Key] = string(b)
		}
		return m
	}
	assert.Equal(t, sortAnn(w.Annotations), sortAnn(g.Annotations), "annotations")
	w.Annotations, g.Annotations = nil, nil
	var wr, gr any
	require.NoError(t, json.Unmarshal(w.Response.Result, &wr))
	require.NoError(t, json.Unmarshal(g.Response.Result, &gr))
	assert.Equal(t, wr, gr, "result")
	w.Response.Result, g.Response.Result = nil, nil
	assert.Equal(t, w.Start.UnixMilli(), g.Start.UnixMilli())
	assert.Equal(t, w.HasEnd(), g.HasEnd())
	w.Start, g.Start, w.End, g.End = time.Time{}, time.Time{}, time.Time{}, time.Time{}
	assert.Equal(t, w, g)
}
