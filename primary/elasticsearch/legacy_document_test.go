package elasticsearch

// The document code this package had before codec wrote the Elasticsearch
// document: the oracle of TestDocumentMatchesLegacy and BenchmarkDocument.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/go-whisk/activationstore/codec"
	"github.com/go-whisk/activationstore/internal/activationtest"
	"github.com/go-whisk/activationstore/store"
)

// legacyExactField holds the annotations in the array form, as a JSON
// string, when OpenWhisk's object form would lose something (a repeated
// key, an init or encryption member). OpenWhisk's reader ignores it.
const legacyExactField = "annotationsArray"

// legacyMember is one member of a JSON object, in document order.
type legacyMember struct {
	key string
	val json.RawMessage
}

// members reads the members of the JSON object raw, in order.
func legacyMembers(raw []byte) ([]legacyMember, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	t, err := dec.Token()
	if err != nil {
		return nil, err
	}
	if d, ok := t.(json.Delim); !ok || d != '{' {
		return nil, errors.New("not a JSON object")
	}
	var out []legacyMember
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return nil, err
		}
		k, _ := t.(string)
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, err
		}
		out = append(out, legacyMember{k, v})
	}
	if _, err := dec.Token(); err != nil {
		return nil, err
	}
	return out, nil
}

// appendString appends s as a JSON string.
func legacyAppendString(dst []byte, s string) []byte {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(s) // a string always encodes
	return append(dst, bytes.TrimSuffix(buf.Bytes(), []byte("\n"))...)
}

// compactRaw returns raw compacted, or "null" when empty.
func legacyCompactRaw(raw json.RawMessage) []byte {
	if len(raw) == 0 {
		return []byte("null")
	}
	var b bytes.Buffer
	if err := json.Compact(&b, raw); err != nil {
		return raw
	}
	return b.Bytes()
}

// instant formats t (epoch milliseconds) as java.time.Instant.toString
// does: ISO-8601 in UTC, seconds always, the fraction only when non-zero,
// a year beyond 9999 with "+".
func legacyInstant(ms int64) string {
	t := time.UnixMilli(ms).UTC()
	var b []byte
	y := t.Year()
	switch {
	case y > 9999:
		b = append(b, '+')
		b = strconv.AppendInt(b, int64(y), 10)
	case y < 0:
		b = append(b, '-')
		b = append(b, fmt.Sprintf("%04d", -y)...)
	default:
		b = append(b, fmt.Sprintf("%04d", y)...)
	}
	b = append(b, t.Format("-01-02T15:04:05")...)
	if frac := ms % 1000; frac != 0 {
		if frac < 0 {
			frac += 1000
		}
		b = append(b, fmt.Sprintf(".%03d", frac)...)
	}
	return string(append(b, 'Z'))
}

// legacyEncodeDocument writes a's document as OpenWhisk's
// ElasticSearchActivationStore does: the CouchDB document without "_id",
// plus "path" and "@timestamp", the annotations as an object and the
// result as a JSON string.
func legacyEncodeDocument(a *store.Activation, updated time.Time) ([]byte, error) {
	base, err := codec.MarshalDocument(a, updated)
	if err != nil {
		return nil, err
	}
	ms, err := legacyMembers(base)
	if err != nil {
		return nil, fmt.Errorf("elasticsearch: re-reading the codec's document: %w", err)
	}
	dst := make([]byte, 0, len(base)+len(a.Response.Result)/8+128)
	dst = append(dst, '{')
	first := true
	sep := func() {
		if !first {
			dst = append(dst, ',')
		}
		first = false
	}
	for _, m := range ms {
		switch m.key {
		case "_id":
			continue
		case "response":
			sep()
			dst = append(dst, `"response":{"statusCode":`...)
			dst = strconv.AppendInt(dst, int64(a.Response.StatusCode), 10)
			dst = append(dst, `,"result":`...)
			dst = legacyAppendString(dst, string(legacyCompactRaw(a.Response.Result)))
			if a.Response.Size != nil {
				dst = append(dst, `,"size":`...)
				dst = strconv.AppendInt(dst, *a.Response.Size, 10)
			}
			dst = append(dst, '}')
		case "annotations":
			sep()
			dst = append(dst, `"annotations":`...)
			var exact bool
			dst, exact = legacyAnnotationsObject(dst, a.Annotations)
			if exact {
				dst = append(dst, `,"`+legacyExactField+`":`...)
				dst = legacyAppendString(dst, string(m.val))
			}
		default:
			sep()
			dst = legacyAppendString(dst, m.key)
			dst = append(dst, ':')
			dst = append(dst, m.val...)
		}
	}
	dst = append(dst, `,"path":`...)
	dst = legacyAppendString(dst, codec.ElasticsearchPath(a))
	dst = append(dst, `,"@timestamp":`...)
	dst = legacyAppendString(dst, legacyInstant(a.Start.UnixMilli()))
	return append(dst, '}'), nil
}

// appendAnnotationsObject writes the annotations as OpenWhisk's
// Parameters.toJsObject: key to value, the last value of a repeated key.
// It reports whether the object loses something the array form holds.
func legacyAnnotationsObject(dst []byte, as []store.Annotation) ([]byte, bool) {
	lossy := false
	last := make(map[string]int, len(as))
	for i, an := range as {
		if _, dup := last[an.Key]; dup {
			lossy = true
		}
		last[an.Key] = i
		if an.Init || an.Encryption != "" {
			lossy = true
		}
	}
	dst = append(dst, '{')
	n := 0
	for i, an := range as {
		if last[an.Key] != i {
			continue
		}
		if n > 0 {
			dst = append(dst, ',')
		}
		n++
		dst = legacyAppendString(dst, an.Key)
		dst = append(dst, ':')
		dst = append(dst, legacyCompactRaw(an.Value)...)
	}
	return append(dst, '}'), lossy
}

// legacyDecodeDocument reads a document's _source as OpenWhisk's
// deserializeHitToWhiskActivation does (restoreResponse, restoreAnnotations,
// then the WhiskActivation reader), with two differences: a result that
// is a JSON scalar is kept (OpenWhisk drops it), and the exact annotations
// of annotationsArray, when present, win over the object.
func legacyDecodeDocument(src []byte) (*store.Activation, error) {
	ms, err := legacyMembers(src)
	if err != nil {
		return nil, &codec.Error{Field: "_source", Reason: err.Error(), Offset: -1}
	}
	var exact json.RawMessage
	for _, m := range ms {
		if m.key == legacyExactField {
			var s string
			if json.Unmarshal(m.val, &s) == nil && json.Valid([]byte(s)) {
				exact = json.RawMessage(s)
			}
		}
	}
	dst := make([]byte, 0, len(src)+64)
	dst = append(dst, '{')
	n := 0
	add := func(k string, v []byte) {
		if n > 0 {
			dst = append(dst, ',')
		}
		n++
		dst = legacyAppendString(dst, k)
		dst = append(dst, ':')
		dst = append(dst, v...)
	}
	sawAnnotations, sawResponse := false, false
	for _, m := range ms {
		switch m.key {
		case "path", "@timestamp", legacyExactField, "_id":
		case "annotations":
			sawAnnotations = true
			if exact != nil {
				add(m.key, exact)
			} else {
				add(m.key, legacyRestoreAnnotations(m.val))
			}
		case "response":
			sawResponse = true
			add(m.key, legacyRestoreResponse(m.val))
		default:
			add(m.key, m.val)
		}
	}
	if !sawAnnotations {
		add("annotations", []byte("[]"))
	}
	if !sawResponse {
		add("response", []byte("{}"))
	}
	dst = append(dst, '}')
	doc, err := codec.UnmarshalDocument(dst)
	if err != nil {
		return nil, err
	}
	return doc.Activation, nil
}

// restoreAnnotations turns the object back into the array; anything else
// becomes [] (OpenWhisk's Try(...).getOrElse(JsArray.empty)).
func legacyRestoreAnnotations(v json.RawMessage) []byte {
	ms, err := legacyMembers(v)
	if err != nil {
		return []byte("[]")
	}
	dst := []byte{'['}
	for i, m := range ms {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, `{"key":`...)
		dst = legacyAppendString(dst, m.key)
		dst = append(dst, `,"value":`...)
		dst = append(dst, m.val...)
		dst = append(dst, '}')
	}
	return append(dst, ']')
}

// restoreResponse parses the result string back. A result that is not a
// string of valid JSON is dropped; a missing one becomes {}.
func legacyRestoreResponse(v json.RawMessage) []byte {
	ms, err := legacyMembers(v)
	if err != nil {
		return v // not an object: the reader fails, as OpenWhisk's
	}
	dst := []byte{'{'}
	sawResult := false
	n := 0
	for _, m := range ms {
		val := []byte(m.val)
		if m.key == "result" {
			sawResult = true
			var s string
			if json.Unmarshal(m.val, &s) != nil || !json.Valid([]byte(s)) {
				continue
			}
			val = []byte(s)
		}
		if n > 0 {
			dst = append(dst, ',')
		}
		n++
		dst = legacyAppendString(dst, m.key)
		dst = append(dst, ':')
		dst = append(dst, val...)
	}
	if !sawResult {
		if n > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, `"result":{}`...)
	}
	return append(dst, '}')
}

// TestDocumentMatchesLegacy: codec writes the bytes the old writer wrote,
// but where the old escaper broke spray-json's rules (U+FFFF raw, invalid
// UTF-8 raw in raw values) or escaped what spray-json writes raw (U+2028,
// U+2029); both read back the same activation.
func TestDocumentMatchesLegacy(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 7))
	alphabet := []string{"a", "Z", "0", " ", "\"", "\\", "/", "\n", "\t", "\x01", "\x1f", "<", "&", "é", "☃", "😀", "\u007f"}
	special := []string{"\uffff", "\xff", "\xc3", "\u2028", "\u2029"}
	str := func(sp bool) string {
		var b strings.Builder
		for range rng.IntN(12) {
			if sp && rng.IntN(4) == 0 {
				b.WriteString(special[rng.IntN(len(special))])
			} else {
				b.WriteString(alphabet[rng.IntN(len(alphabet))])
			}
		}
		return b.String()
	}
	raw := func(sp bool) json.RawMessage {
		switch rng.IntN(6) {
		case 0:
			var q strings.Builder
			for _, c := range []byte(str(sp)) {
				switch {
				case c == '"' || c == '\\':
					q.WriteString(`\` + string(c))
				case c < 0x20:
					fmt.Fprintf(&q, `\u%04x`, c)
				default:
					q.WriteByte(c)
				}
			}
			return json.RawMessage(`{ "n" : 1.50e3 , "s" : "` + q.String() + `" , "e":"\u00e9\ud83d\ude00"}`)
		case 1:
			return json.RawMessage(`[1, null, true, "x"]`)
		case 2:
			return json.RawMessage(`"` + strings.Map(func(r rune) rune {
				if r < 0x20 || r == '"' || r == '\\' {
					return 'q'
				}
				return r
			}, str(sp)) + `"`)
		case 3:
			return nil
		case 4:
			return json.RawMessage(`-0.0`)
		}
		return json.RawMessage(`{}`)
	}
	same, differ := 0, 0
	for i := range 5000 {
		sp := i%2 == 1
		a := &store.Activation{
			Namespace: "guest", Name: "act" + strconv.Itoa(i), Subject: "guest-subject" + str(sp), ActivationID: fmt.Sprintf("%032x", i),
			Start: time.UnixMilli(rng.Int64N(1 << 42)), End: time.UnixMilli(rng.Int64N(1 << 42)), Cause: str(sp),
			Response: store.Response{StatusCode: rng.IntN(4), Result: raw(sp)},
			Version:  "0.0.1", Publish: rng.IntN(2) == 0,
		}
		if rng.IntN(2) == 0 {
			a.Response.Size = new(rng.Int64N(1000))
			a.Duration = new(rng.Int64N(1000))
		}
		for range rng.IntN(4) {
			a.Logs = append(a.Logs, str(sp))
		}
		for range rng.IntN(5) {
			keys := []string{"path", "binding", "kind", str(sp)}
			an := store.Annotation{Key: keys[rng.IntN(len(keys))], Value: raw(sp), Init: rng.IntN(8) == 0}
			if rng.IntN(8) == 0 {
				an.Encryption = str(sp)
			}
			a.Annotations = append(a.Annotations, an)
		}
		old, oerr := legacyEncodeDocument(a, time.UnixMilli(5))
		cur, cerr := codec.MarshalElasticsearchDocument(a, time.UnixMilli(5))
		require.Equal(t, oerr, cerr, "%d", i)
		if bytes.Equal(old, cur) {
			same++
			continue
		}
		require.True(t, sp, "record %d without special characters differs:\nold %s\nnew %s", i, old, cur)
		differ++
		require.NotContains(t, string(cur), "\uffff", "%d", i)
		require.True(t, utf8.Valid(cur), "%d", i)
		want, err := legacyDecodeDocument(old)
		if err != nil {
			continue // the old writer wrote what no reader can take
		}
		got, err := codec.UnmarshalElasticsearchDocument(cur)
		require.NoError(t, err, "%d: %s", i, cur)
		assert.Equal(t, canonical(t, want), canonical(t, got), "%d", i)
	}
	t.Logf("%d documents identical, %d differ (each with a special character)", same, differ)
	assert.Greater(t, same, 2500)
}

// canonical is a's CouchDB document with raw values re-encoded, so that
// two writers' escapes of one string compare equal.
func canonical(t *testing.T, a *store.Activation) any {
	b, err := codec.MarshalDocument(a, time.UnixMilli(5))
	require.NoError(t, err)
	var v any
	require.NoError(t, json.Unmarshal(b, &v))
	return v
}

func BenchmarkDocument(b *testing.B) {
	a := activationtest.New("guest")
	a.Logs = append(a.Logs, strings.Repeat("x", 700))
	now := time.UnixMilli(1_700_000_000_000)
	for _, c := range []struct {
		name string
		fn   func(*store.Activation, time.Time) ([]byte, error)
	}{{"legacy", legacyEncodeDocument}, {"codec", codec.MarshalElasticsearchDocument}} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := c.fn(a, now); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	doc, err := codec.MarshalElasticsearchDocument(a, now)
	require.NoError(b, err)
	for _, c := range []struct {
		name string
		fn   func([]byte) (*store.Activation, error)
	}{{"read-legacy", legacyDecodeDocument}, {"read-codec", codec.UnmarshalElasticsearchDocument}} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(doc)))
			for b.Loop() {
				if _, err := c.fn(doc); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
