package elasticsearch

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/go-whisk/activationstore/store"
)

func TestInstantAsJavaWritesIt(t *testing.T) {
	for ms, want := range map[int64]string{
		0:                   "1970-01-01T00:00:00Z",
		1_700_000_000_000:   "2023-11-14T22:13:20Z",
		1_700_000_000_042:   "2023-11-14T22:13:20.042Z",
		-1:                  "1969-12-31T23:59:59.999Z",
		253_402_300_800_000: "+10000-01-01T00:00:00Z",
	} {
		assert.Equal(t, want, instant(ms), "%d", ms)
	}
}

func TestDocumentShape(t *testing.T) {
	a := &store.Activation{
		Namespace: "guest", Name: "hello", Subject: "guest-subject", ActivationID: strings.Repeat("ab", 16),
		Start: time.UnixMilli(1_700_000_000_042), End: time.UnixMilli(1_700_000_000_100), Version: "0.0.1",
		Response: store.Response{StatusCode: 0, Result: json.RawMessage(`{ "a" : [1, "<&>"] }`)},
		Annotations: []store.Annotation{
			{Key: "binding", Value: json.RawMessage(`"guest/bnd"`)},
			{Key: "kind", Value: json.RawMessage(`"nodejs:20"`)},
		},
	}
	b, err := encodeDocument(a, time.UnixMilli(5))
	require.NoError(t, err)
	var doc map[string]any
	require.NoError(t, json.Unmarshal(b, &doc), "%s", b)
	assert.NotContains(t, doc, "_id")
	assert.NotContains(t, doc, exactAnnotationsField, "nothing lost: no exact copy")
	assert.Equal(t, "guest/bnd/hello", doc["path"])
	assert.Equal(t, "2023-11-14T22:13:20.042Z", doc["@timestamp"])
	assert.Equal(t, map[string]any{"binding": "guest/bnd", "kind": "nodejs:20"}, doc["annotations"])
	assert.Equal(t, `{"a":[1,"<&>"]}`, doc["response"].(map[string]any)["result"])
	assert.Equal(t, "activation", doc["entityType"])
	assert.EqualValues(t, 5, doc["updated"])

	got, err := decodeDocument(b)
	require.NoError(t, err)
	assert.Equal(t, a.Annotations[0].Key, got.Annotations[0].Key)
	assert.JSONEq(t, string(a.Response.Result), string(got.Response.Result))

	// Absent result: the string "null", read back absent.
	a.Response.Result = nil
	a.Annotations = append(a.Annotations, store.Annotation{Key: "kind", Value: json.RawMessage(`"x"`), Init: true})
	b, err = encodeDocument(a, time.UnixMilli(5))
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(b, &doc))
	assert.Equal(t, "null", doc["response"].(map[string]any)["result"])
	assert.Contains(t, doc, exactAnnotationsField, "a repeated key and init are kept exactly")
	got, err = decodeDocument(b)
	require.NoError(t, err)
	assert.Nil(t, got.Response.Result)
	require.Len(t, got.Annotations, 3)
	assert.True(t, got.Annotations[2].Init)
}

// OpenWhisk's restoreResponse and restoreAnnotations on documents it
// writes or may find.
func TestRestoreAsOpenWhisk(t *testing.T) {
	base := `"namespace":"guest","name":"a","subject":"guest-subject","activationId":"` + strings.Repeat("cd", 16) +
		`","start":1,"end":2,"logs":[],"version":"0.0.1","publish":false`
	for _, c := range []struct{ response, annotations, wantResult, wantAnn string }{
		{`{"statusCode":0,"result":"[1,2]"}`, `{"k":1}`, `[1,2]`, `[{"key":"k","value":1}]`},
		{`{"statusCode":0,"result":"42"}`, `[]`, `42`, `[]`},                                                   // kept here; OpenWhisk drops a scalar
		{`{"statusCode":0,"result":"not json"}`, `"x"`, ``, `[]`},                                              // dropped, as OpenWhisk
		{`{"statusCode":0,"result":{"raw":true}}`, `{}`, ``, `[]`},                                             // not a string: dropped
		{`{"statusCode":0}`, `{"b":"x","a":null}`, `{}`, `[{"key":"b","value":"x"},{"key":"a","value":null}]`}, // missing: {}
	} {
		a, err := decodeDocument([]byte(`{` + base + `,"response":` + c.response + `,"annotations":` + c.annotations + `}`))
		require.NoError(t, err, "%+v", c)
		if c.wantResult == "" {
			assert.Nil(t, a.Response.Result, "%+v", c)
		} else {
			assert.JSONEq(t, c.wantResult, string(a.Response.Result), "%+v", c)
		}
		ann, _ := json.Marshal(a.Annotations)
		var want []map[string]any
		require.NoError(t, json.Unmarshal([]byte(c.wantAnn), &want))
		var gotAnn []map[string]any
		for _, an := range a.Annotations {
			var v any
			_ = json.Unmarshal(an.Value, &v)
			gotAnn = append(gotAnn, map[string]any{"key": an.Key, "value": v})
		}
		if len(want) == 0 {
			assert.Empty(t, gotAnn, "%s", ann)
		} else {
			assert.Equal(t, want, gotAnn)
		}
	}
}

func TestIndexNames(t *testing.T) {
	s := &Store{pattern: "openwhisk-%s"}
	for ns, want := range map[string]string{
		"guest": "openwhisk-guest", "Guest/pkg": "openwhisk-guest", "a b": "openwhisk-a+b",
		"user@example.com": "openwhisk-user@example.com", "a-b&c": "openwhisk-a-b&c",
	} {
		got, err := s.indexName(ns)
		require.NoError(t, err, ns)
		assert.Equal(t, want, got)
	}
	_, err := s.indexName(strings.Repeat("n", 250))
	require.ErrorIs(t, err, store.ErrInvalid)
	var ie *store.InvalidError
	require.True(t, errors.As(err, &ie))
	assert.Equal(t, "namespace", ie.Field)
	assert.Contains(t, err.Error(), "255 bytes")

	for _, p := range []string{"openwhisk-%s", "/openwhisk-%s", "activations", "%s"} {
		assert.NoError(t, checkPattern(p), p)
	}
	for _, p := range []string{"Openwhisk-%s", "ow-%s-%s", "ow-%d", "ow %s", "-ow-%s"} {
		assert.Error(t, checkPattern(p), p)
	}
}

func TestRedaction(t *testing.T) {
	r := redactor("elastic", "s3cr3t-pw")
	assert.Equal(t, "http://xxxxx@h:1 xxxxx", r("http://elastic:s3cr3t-pw@h:1 s3cr3t-pw"))
}
