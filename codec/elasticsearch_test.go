package codec_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/go-whisk/activationstore/codec"
	"github.com/go-whisk/activationstore/store"
)

func esActivation() *store.Activation {
	return &store.Activation{
		Namespace: "guest", Name: "hello", Subject: "guest-subject", ActivationID: strings.Repeat("ab", 16),
		Start: time.UnixMilli(1_700_000_000_042), End: time.UnixMilli(1_700_000_000_100), Version: "0.0.1",
		Response: store.Response{StatusCode: 0, Result: json.RawMessage(`{ "a" : [1, "<&>"] }`)},
		Annotations: []store.Annotation{
			{Key: "binding", Value: json.RawMessage(`"guest/bnd"`)},
			{Key: "kind", Value: json.RawMessage(`"nodejs:20"`)},
		},
	}
}

func TestElasticsearchTimestampAsJavaWritesIt(t *testing.T) {
	for ms, want := range map[int64]string{
		0:                   "1970-01-01T00:00:00Z",
		1_700_000_000_000:   "2023-11-14T22:13:20Z",
		1_700_000_000_042:   "2023-11-14T22:13:20.042Z",
		-1:                  "1969-12-31T23:59:59.999Z",
		253_402_300_800_000: "+10000-01-01T00:00:00Z",
		-62_135_596_800_000: "0001-01-01T00:00:00Z",
	} {
		a := esActivation()
		a.Start = time.UnixMilli(ms)
		b, err := codec.MarshalElasticsearchDocument(a, time.UnixMilli(5))
		require.NoError(t, err)
		var doc map[string]any
		require.NoError(t, json.Unmarshal(b, &doc), "%s", b)
		assert.Equal(t, want, doc["@timestamp"], "%d", ms)
	}
}

func TestElasticsearchDocumentShape(t *testing.T) {
	a := esActivation()
	b, err := codec.MarshalElasticsearchDocument(a, time.UnixMilli(5))
	require.NoError(t, err)
	assert.Equal(t, `{"entityType":"activation","updated":5,"namespace":"guest","name":"hello","subject":"guest-subject",`+
		`"activationId":"abababababababababababababababab","start":1700000000042,"end":1700000000100,`+
		`"response":{"statusCode":0,"result":"{\"a\":[1,\"<&>\"]}"},"logs":[],"version":"0.0.1","publish":false,`+
		`"annotations":{"binding":"guest/bnd","kind":"nodejs:20"},"path":"guest/bnd/hello","@timestamp":"2023-11-14T22:13:20.042Z"}`,
		string(b))

	got, err := codec.UnmarshalElasticsearchDocument(b)
	require.NoError(t, err)
	assert.Equal(t, a.Annotations[0].Key, got.Annotations[0].Key)
	assert.JSONEq(t, string(a.Response.Result), string(got.Response.Result))

	// Absent result: the string "null", read back absent. A repeated key
	// and init: the array follows the object, and wins on reading.
	a.Response.Result = nil
	a.Annotations = append(a.Annotations, store.Annotation{Key: "kind", Value: json.RawMessage(`"x"`), Init: true})
	b, err = codec.MarshalElasticsearchDocument(a, time.UnixMilli(5))
	require.NoError(t, err)
	var doc map[string]any
	require.NoError(t, json.Unmarshal(b, &doc))
	assert.Equal(t, "null", doc["response"].(map[string]any)["result"])
	assert.Equal(t, map[string]any{"binding": "guest/bnd", "kind": "x"}, doc["annotations"], "the last value of a repeated key")
	assert.Equal(t, `[{"key":"binding","value":"guest/bnd"},{"key":"kind","value":"nodejs:20"},{"key":"kind","value":"x","init":true}]`,
		doc[codec.ExactAnnotationsField])
	got, err = codec.UnmarshalElasticsearchDocument(b)
	require.NoError(t, err)
	assert.Nil(t, got.Response.Result)
	require.Len(t, got.Annotations, 3)
	assert.True(t, got.Annotations[2].Init)
}

// TestElasticsearchDocumentUnindexableBinding: a "binding" annotation
// whose value is an object or an array stays out of the object form
// (indices index binding as text, and the server would refuse the whole
// document), is kept in the exact form, and reads back whole; a scalar
// binding stays in the object.
func TestElasticsearchDocumentUnindexableBinding(t *testing.T) {
	for _, v := range []string{`{"namespace":"guest","name":"bnd"}`, `["guest/bnd"]`, ` {"x":1}`} {
		a := esActivation()
		a.Annotations[0].Value = json.RawMessage(v)
		b, err := codec.MarshalElasticsearchDocument(a, time.UnixMilli(5))
		require.NoError(t, err)
		var doc map[string]any
		require.NoError(t, json.Unmarshal(b, &doc))
		assert.Equal(t, map[string]any{"kind": "nodejs:20"}, doc["annotations"], "binding %s", v)
		assert.Contains(t, doc, codec.ExactAnnotationsField, "binding %s", v)
		assert.Equal(t, "guest/hello", doc["path"], "a binding that is not a string is not in the path")
		got, err := codec.UnmarshalElasticsearchDocument(b)
		require.NoError(t, err)
		require.Len(t, got.Annotations, 2)
		assert.JSONEq(t, v, string(got.Annotations[0].Value), "binding %s read back", v)
	}
	for _, v := range []string{`"guest/bnd"`, `42`, `true`, `null`} {
		a := esActivation()
		a.Annotations[0].Value = json.RawMessage(v)
		b, err := codec.MarshalElasticsearchDocument(a, time.UnixMilli(5))
		require.NoError(t, err)
		var doc map[string]any
		require.NoError(t, json.Unmarshal(b, &doc))
		assert.Contains(t, doc["annotations"], "binding", "scalar binding %s", v)
		assert.NotContains(t, doc, codec.ExactAnnotationsField, "scalar binding %s", v)
	}
}

// TestElasticsearchDocumentStringsAsSprayJSON: strings are written by the
// codec's escaper, as in every other form: U+FFFF escaped (spray-json's
// parser takes it raw as the end of input, and the encoding/json escaper
// primary/elasticsearch once wrote this document with wrote it raw),
// invalid UTF-8 as U+FFFD (that writer kept it raw in annotation values
// and inside the result string), U+2028 raw (spray-json's compactPrint
// does not escape it; encoding/json does). Each reads back.
func TestElasticsearchDocumentStringsAsSprayJSON(t *testing.T) {
	a := esActivation()
	a.Logs = []string{"ffff:\uffff bad:\xff ls:\u2028"}
	a.Response.Result = json.RawMessage("{\"r\":\"\uffff\xff\"}")
	a.Annotations = append(a.Annotations, store.Annotation{Key: "k\uffff", Value: json.RawMessage("\"v\uffff\xfe\"")})
	b, err := codec.MarshalElasticsearchDocument(a, time.UnixMilli(5))
	require.NoError(t, err)
	s := string(b)
	assert.NotContains(t, s, "\uffff", "no raw U+FFFF anywhere")
	assert.True(t, json.Valid(b) && !strings.ContainsRune(strings.ToValidUTF8(s, "!"), '!'), "valid UTF-8 JSON: %q", s)
	assert.Contains(t, s, `"logs":["ffff:\uffff bad:\ufffd ls:`+"\u2028"+`"]`)
	assert.Contains(t, s, `"result":"{\"r\":\"\\uffff`+"\uFFFD"+`\"}"`, "the result's own escape kept inside the string")
	assert.Contains(t, s, `"k\uffff":"v\uffff`+"\uFFFD"+`"`)

	got, err := codec.UnmarshalElasticsearchDocument(b)
	require.NoError(t, err)
	assert.Equal(t, []string{"ffff:\uffff bad:\uFFFD ls:\u2028"}, got.Logs)
	var r map[string]string
	require.NoError(t, json.Unmarshal(got.Response.Result, &r))
	assert.Equal(t, "\uffff\uFFFD", r["r"])
	require.Len(t, got.Annotations, 3)
	assert.Equal(t, "k\uffff", got.Annotations[2].Key)
	var v string
	require.NoError(t, json.Unmarshal(got.Annotations[2].Value, &v))
	assert.Equal(t, "v\uffff\uFFFD", v)
}

// TestElasticsearchDocumentRefuses: what MarshalDocument refuses, with
// the member named.
func TestElasticsearchDocumentRefuses(t *testing.T) {
	for field, mutate := range map[string]func(a *store.Activation){
		"response.result":      func(a *store.Activation) { a.Response.Result = json.RawMessage(`{"a":`) },
		"response.size":        func(a *store.Activation) { a.Response.Size = new(int64(1 << 40)) },
		"response.statusCode":  func(a *store.Activation) { a.Response.StatusCode = 1 << 40 },
		"annotations[1].value": func(a *store.Activation) { a.Annotations[1].Value = json.RawMessage(`1e2147483648`) },
		"annotations[0].value.big": func(a *store.Activation) {
			a.Annotations[0].Value = json.RawMessage(`[` + strings.Repeat("9", 101) + `]`)
		},
	} {
		a := esActivation()
		mutate(a)
		_, err := codec.MarshalElasticsearchDocument(a, time.UnixMilli(5))
		require.ErrorIs(t, err, store.ErrInvalid, field)
		var ie *store.InvalidError
		require.True(t, errors.As(err, &ie), field)
		assert.Equal(t, strings.TrimSuffix(field, ".big"), ie.Field)
		_, derr := codec.MarshalDocument(a, time.UnixMilli(5))
		assert.Equal(t, err, derr, "the CouchDB document refuses the same")
	}
	_, err := codec.MarshalElasticsearchDocument(nil, time.Time{})
	assert.ErrorIs(t, err, store.ErrInvalid)
}

func TestElasticsearchPath(t *testing.T) {
	for _, c := range []struct {
		ann        string
		path, name string
	}{
		{`[]`, "guest/hello", "hello"},
		{`[{"key":"path","value":"guest/pkg/hello"}]`, "guest/pkg/hello", "pkg/hello"},
		{`[{"key":"path","value":"guest/pkg/hello"},{"key":"binding","value":"guest/bnd"}]`, "guest/bnd/hello", "bnd/hello"},
		{`[{"key":"path","value":"guest/pkg/hello"},{"key":"binding","value":42}]`, "guest/pkg/hello", "pkg/hello"},
		{`[{"key":"path","value":"guest/pkg/hello"},{"key":"binding","value":null}]`, "guest/pkg/hello", "pkg/hello"},
		{`[{"key":"binding","value":"other/bnd"}]`, "other/bnd/hello", "\x00other/bnd/hello"},
		{`[{"key":"binding","value":""}]`, "/hello", "\x00/hello"},
		{`[{"key":"path","value":1},{"key":"path","value":"guest/p/hello"}]`, "guest/p/hello", "p/hello"},
		{`[{"key":"path","value":"guest/p/hello"},{"key":"path","value":1}]`, "guest/hello", "hello"},
		{`[{"key":"path","value":"gue"}]`, "gue", "\x00gue"},
		{`[{"key":"path","value":"guestx/a"}]`, "guestx/a", "\x00guestx/a"},
	} {
		a := esActivation()
		a.Annotations = nil
		require.NoError(t, json.Unmarshal([]byte(c.ann), &a.Annotations))
		assert.Equal(t, c.path, codec.ElasticsearchPath(a), c.ann)
		assert.Equal(t, c.name, codec.ElasticsearchName(a), c.ann)
	}
}

// OpenWhisk's restoreResponse and restoreAnnotations on documents it
// writes or may find.
func TestElasticsearchRestoreAsOpenWhisk(t *testing.T) {
	base := `"namespace":"guest","name":"a","subject":"guest-subject","activationId":"` + strings.Repeat("cd", 16) +
		`","start":1,"end":2,"logs":[],"version":"0.0.1","publish":false`
	for _, c := range []struct{ response, annotations, wantResult, wantAnn string }{
		{`{"statusCode":0,"result":"[1,2]"}`, `{"k":1}`, `[1,2]`, `[{"key":"k","value":1}]`},
		{`{"statusCode":0,"result":"42"}`, `[]`, `42`, `[]`},                                                   // kept here; OpenWhisk drops a scalar
		{`{"statusCode":0,"result":"not json"}`, `"x"`, ``, `[]`},                                              // dropped, as OpenWhisk
		{`{"statusCode":0,"result":{"raw":true}}`, `{}`, ``, `[]`},                                             // not a string: dropped
		{`{"statusCode":0}`, `{"b":"x","a":null}`, `{}`, `[{"key":"b","value":"x"},{"key":"a","value":null}]`}, // missing: {}
	} {
		a, err := codec.UnmarshalElasticsearchDocument([]byte(`{` + base + `,"response":` + c.response + `,"annotations":` + c.annotations + `}`))
		require.NoError(t, err, "%+v", c)
		if c.wantResult == "" {
			assert.Nil(t, a.Response.Result, "%+v", c)
		} else {
			assert.JSONEq(t, c.wantResult, string(a.Response.Result), "%+v", c)
		}
		var want []map[string]any
		require.NoError(t, json.Unmarshal([]byte(c.wantAnn), &want))
		var gotAnn []map[string]any
		for _, an := range a.Annotations {
			var v any
			require.NoError(t, json.Unmarshal(an.Value, &v))
			gotAnn = append(gotAnn, map[string]any{"key": an.Key, "value": v})
		}
		if len(want) == 0 {
			assert.Empty(t, gotAnn)
		} else {
			assert.Equal(t, want, gotAnn)
		}
	}
	_, err := codec.UnmarshalElasticsearchDocument([]byte(`[1]`))
	require.ErrorIs(t, err, codec.ErrMalformed)
	var ce *codec.Error
	require.ErrorAs(t, err, &ce)
	assert.Equal(t, "_source", ce.Field)
}
