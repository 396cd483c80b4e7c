package elasticsearch

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/go-whisk/activationstore/codec"
	"github.com/go-whisk/activationstore/store"
)

// exactAnnotationsField holds the annotations in the array form, as a JSON
// string, when OpenWhisk's object form would lose something (a repeated
// key, an init or encryption member). OpenWhisk's reader ignores it.
const exactAnnotationsField = "annotationsArray"

// member is one member of a JSON object, in document order.
type member struct {
	key string
	val json.RawMessage
}

// members reads the members of the JSON object raw, in order.
func members(raw []byte) ([]member, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	t, err := dec.Token()
	if err != nil {
		return nil, err
	}
	if d, ok := t.(json.Delim); !ok || d != '{' {
		return nil, errors.New("not a JSON object")
	}
	var out []member
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
		out = append(out, member{k, v})
	}
	if _, err := dec.Token(); err != nil {
		return nil, err
	}
	return out, nil
}

// appendString appends s as a JSON string.
func appendString(dst []byte, s string) []byte {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(s) // a string always encodes
	return append(dst, bytes.TrimSuffix(buf.Bytes(), []byte("\n"))...)
}

// compactRaw returns raw compacted, or "null" when empty.
func compactRaw(raw json.RawMessage) []byte {
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
func instant(ms int64) string {
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

// sinceMs is a query's lower bound on start: an unset (zero) Since is
// epoch 0, where OpenWhisk's queries start.
func sinceMs(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

// encodeDocument writes a's document as OpenWhisk's
// ElasticSearchActivationStore does: the CouchDB document without "_id",
// plus "path" and "@timestamp", the annotations as an object and the
// result as a JSON string.
func encodeDocument(a *store.Activation, updated time.Time) ([]byte, error) {
	base, err := codec.MarshalDocument(a, updated)
	if err != nil {
		return nil, err
	}
	ms, err := members(base)
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
			dst = appendString(dst, string(compactRaw(a.Response.Result)))
			if a.Response.Size != nil {
				dst = append(dst, `,"size":`...)
				dst = strconv.AppendInt(dst, *a.Response.Size, 10)
			}
			dst = append(dst, '}')
		case "annotations":
			sep()
			dst = append(dst, `"annotations":`...)
			var exact bool
			dst, exact = appendAnnotationsObject(dst, a.Annotations)
			if exact {
				dst = append(dst, `,"`+exactAnnotationsField+`":`...)
				dst = appendString(dst, string(m.val))
			}
		default:
			sep()
			dst = appendString(dst, m.key)
			dst = append(dst, ':')
			dst = append(dst, m.val...)
		}
	}
	dst = append(dst, `,"path":`...)
	dst = appendString(dst, store.ElasticSearchPath(a))
	dst = append(dst, `,"@timestamp":`...)
	dst = appendString(dst, instant(a.Start.UnixMilli()))
	return append(dst, '}'), nil
}

// appendAnnotationsObject writes the annotations as OpenWhisk's
// Parameters.toJsObject: key to value, the last value of a repeated key.
// It reports whether the object loses something the array form holds.
func appendAnnotationsObject(dst []byte, as []store.Annotation) ([]byte, bool) {
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
		dst = appendString(dst, an.Key)
		dst = append(dst, ':')
		dst = append(dst, compactRaw(an.Value)...)
	}
	return append(dst, '}'), lossy
}

// decodeDocument reads a document's _source as OpenWhisk's
// deserializeHitToWhiskActivation does (restoreResponse, restoreAnnotations,
// then the WhiskActivation reader), with two differences: a result that
// is a JSON scalar is kept (OpenWhisk drops it), and the exact annotations
// of annotationsArray, when present, win over the object.
func decodeDocument(src []byte) (*store.Activation, error) {
	ms, err := members(src)
	if err != nil {
		return nil, &codec.Error{Field: "_source", Reason: err.Error(), Offset: -1}
	}
	var exact json.RawMessage
	for _, m := range ms {
		if m.key == exactAnnotationsField {
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
		dst = appendString(dst, k)
		dst = append(dst, ':')
		dst = append(dst, v...)
	}
	sawAnnotations, sawResponse := false, false
	for _, m := range ms {
		switch m.key {
		case "path", "@timestamp", exactAnnotationsField, "_id":
		case "annotations":
			sawAnnotations = true
			if exact != nil {
				add(m.key, exact)
			} else {
				add(m.key, restoreAnnotations(m.val))
			}
		case "response":
			sawResponse = true
			add(m.key, restoreResponse(m.val))
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
func restoreAnnotations(v json.RawMessage) []byte {
	ms, err := members(v)
	if err != nil {
		return []byte("[]")
	}
	dst := []byte{'['}
	for i, m := range ms {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, `{"key":`...)
		dst = appendString(dst, m.key)
		dst = append(dst, `,"value":`...)
		dst = append(dst, m.val...)
		dst = append(dst, '}')
	}
	return append(dst, ']')
}

// restoreResponse parses the result string back. A result that is not a
// string of valid JSON is dropped; a missing one becomes {}.
func restoreResponse(v json.RawMessage) []byte {
	ms, err := members(v)
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
		dst = appendString(dst, m.key)
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
