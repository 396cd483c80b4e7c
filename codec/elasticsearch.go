package codec

import (
	"strconv"
	"time"
	"unsafe"

	"github.com/go-whisk/activationstore/store"
)

// ExactAnnotationsField is the member of the Elasticsearch document that
// holds the annotations in the array form, as a JSON string, when
// OpenWhisk's object form would lose something (a repeated key, an init
// or encryption member, a "binding" whose value is an object or an array,
// which the object form leaves out since indices index it as text).
// OpenWhisk's reader ignores it.
const ExactAnnotationsField = "annotationsArray"

// ElasticsearchPath is the "path" member OpenWhisk's
// ElasticSearchActivationStore writes into an activation's document, which
// its name queries and its scheduler's duration query match: the last
// "binding" annotation + "/" + a.Name when that annotation is a JSON
// string, else the last "path" annotation when it is a string, else
// a.Namespace + "/" + a.Name (spray-json's getAs[String] fails, and falls
// through, on any value that is not a string).
func ElasticsearchPath(a *store.Activation) string {
	path, _ := a.Annotation("path")
	binding, _ := a.Annotation("binding")
	if b, ok := jsonString(binding); ok {
		return b + "/" + a.Name
	}
	if p, ok := jsonString(path); ok {
		return p
	}
	return a.Namespace + "/" + a.Name
}

// ElasticsearchName is the Query.Name that selects a in an Elasticsearch
// index: ElasticsearchPath relative to a's namespace. A path outside the
// namespace (another namespace's binding) gives a name no Query.Name
// equals: it starts with a NUL.
func ElasticsearchName(a *store.Activation) string {
	p := ElasticsearchPath(a)
	if len(p) > len(a.Namespace) && p[len(a.Namespace)] == '/' && p[:len(a.Namespace)] == a.Namespace {
		return p[len(a.Namespace)+1:]
	}
	return "\x00" + p
}

// jsonString returns the value of raw when it is a JSON string.
func jsonString(raw []byte) (string, bool) {
	d := decoder{data: raw}
	d.path = d.pathBuf[:0]
	d.ws()
	if d.peek() != '"' {
		return "", false
	}
	s, err := d.readString()
	if err != nil || d.end() != nil {
		return "", false
	}
	return s, true
}

// MarshalElasticsearchDocument writes a's document as OpenWhisk's
// ElasticSearchActivationStore writes it: the CouchDB document without
// "_id", with the result as a JSON string of its compact form, the
// annotations as an object (OpenWhisk's Parameters.toJsObject: the last
// value of a repeated key), then "path" (ElasticsearchPath) and
// "@timestamp" (the start, as java.time.Instant.toString writes it). When
// the object loses something the array holds, the array follows it as a
// string in ExactAnnotationsField. Strings are written as in every other
// form (spray-json's rules; U+FFFF as \uffff), and the errors are those of
// MarshalDocument.
func MarshalElasticsearchDocument(a *store.Activation, updated time.Time) ([]byte, error) {
	if a == nil {
		return nil, invalidInput("activation", "is nil")
	}
	dst := make([]byte, 0, sizeHint(a)+len(a.Response.Result)/8+160)
	dst = append(dst, `{"entityType":"`+EntityType+`","updated":`...)
	dst = strconv.AppendInt(dst, timeToMs(updated), 10)
	dst = append(dst, ',')
	dst, err := appendActivation(dst, a, formSearch, "")
	if err != nil {
		return nil, err
	}
	dst = append(dst, `,"path":`...)
	dst = appendString(dst, ElasticsearchPath(a))
	dst = append(dst, `,"@timestamp":"`...)
	dst = appendInstant(dst, timeToMs(a.Start))
	return append(dst, `"}`...), nil
}

// appendSearchResponse writes the response with its result as a string:
// the compact result, "null" when absent.
func appendSearchResponse(dst []byte, r *store.Response, field string) ([]byte, error) {
	if err := checkInt(join(field, "statusCode"), int64(r.StatusCode)); err != nil {
		return nil, err
	}
	if r.Size != nil {
		if err := checkInt(join(field, "size"), *r.Size); err != nil {
			return nil, err
		}
	}
	result := []byte("null")
	if r.Result != nil {
		var err error
		if result, err = appendRaw(nil, r.Result, join(field, "result")); err != nil {
			return nil, err
		}
	}
	dst = append(dst, `{"statusCode":`...)
	dst = strconv.AppendInt(dst, int64(r.StatusCode), 10)
	dst = append(dst, `,"result":`...)
	dst = appendString(dst, unsafeString(result))
	if r.Size != nil {
		dst = append(dst, `,"size":`...)
		dst = strconv.AppendInt(dst, *r.Size, 10)
	}
	return append(dst, '}'), nil
}

// appendSearchAnnotations writes the annotations as an object and, when
// that loses something, the array form as a string in ExactAnnotationsField.
func appendSearchAnnotations(dst []byte, as []store.Annotation, field string) ([]byte, error) {
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
	// "binding" is indexed as text (OpenWhisk's scheduler queries it): an
	// object there would make the server refuse the whole document. Such
	// a value, which OpenWhisk never writes, is left out of the object
	// and kept in the exact form.
	unindexable := -1
	if i, ok := last["binding"]; ok && !scalarJSON(as[i].Value) {
		unindexable, lossy = i, true
	}
	// The array first: it checks every value in order, as MarshalDocument.
	var exact []byte
	var err error
	if lossy {
		if exact, err = appendAnnotations(nil, as, field); err != nil {
			return nil, err
		}
	}
	dst = append(dst, '{')
	n := 0
	for i := range as {
		an := &as[i]
		if last[an.Key] != i || i == unindexable {
			continue
		}
		if n > 0 {
			dst = append(dst, ',')
		}
		n++
		dst = appendString(dst, an.Key)
		dst = append(dst, ':')
		if dst, err = appendValue(dst, an.Value, field+"["+itoa(i)+"].value"); err != nil {
			return nil, err
		}
	}
	dst = append(dst, '}')
	if !lossy {
		return dst, nil
	}
	dst = append(dst, `,"`+ExactAnnotationsField+`":`...)
	return appendString(dst, unsafeString(exact)), nil
}

// scalarJSON reports whether raw is a JSON string, number, boolean or
// null (or absent).
func scalarJSON(raw []byte) bool {
	for _, c := range raw {
		switch c {
		case ' ', '\t', '\n', '\r':
			continue
		case '{', '[':
			return false
		}
		return true
	}
	return true
}

// appendInstant writes epoch milliseconds as java.time.Instant.toString
// does: ISO-8601 in UTC, seconds always, the fraction only when non-zero,
// a year beyond 9999 with "+".
func appendInstant(dst []byte, ms int64) []byte {
	t := time.UnixMilli(ms).UTC()
	y := t.Year()
	switch {
	case y > 9999:
		dst = append(dst, '+')
		dst = strconv.AppendInt(dst, int64(y), 10)
	case y < 0:
		dst = append(dst, '-')
		dst = appendPadded(dst, -y, 4)
	default:
		dst = appendPadded(dst, y, 4)
	}
	dst = t.AppendFormat(dst, "-01-02T15:04:05")
	if frac := ms % 1000; frac != 0 {
		if frac < 0 {
			frac += 1000
		}
		dst = append(dst, '.')
		dst = appendPadded(dst, int(frac), 3)
	}
	return append(dst, 'Z')
}

// appendPadded writes v (>= 0) with at least width digits.
func appendPadded(dst []byte, v, width int) []byte {
	for w := len(strconv.Itoa(v)); w < width; w++ {
		dst = append(dst, '0')
	}
	return strconv.AppendInt(dst, int64(v), 10)
}

// UnmarshalElasticsearchDocument reads a document's _source as OpenWhisk's
// deserializeHitToWhiskActivation does (restoreResponse,
// restoreAnnotations, then the WhiskActivation reader), with two
// differences: a result that is a JSON scalar is kept (OpenWhisk drops
// it), and the exact annotations of ExactAnnotationsField, when present,
// win over the object.
func UnmarshalElasticsearchDocument(src []byte) (*store.Activation, error) {
	ms, merr := members(src)
	if merr != nil {
		return nil, &Error{Field: "_source", Reason: merr.Reason, Offset: merr.Offset}
	}
	var exact []byte
	for _, m := range ms {
		if m.key == ExactAnnotationsField {
			if s, ok := jsonString(m.val); ok && validJSON(s) {
				exact = []byte(s)
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
		case "path", "@timestamp", ExactAnnotationsField, "_id":
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
	doc, err := UnmarshalDocument(dst)
	if err != nil {
		return nil, err
	}
	return doc.Activation, nil
}

// member is one member of a JSON object, in document order.
type member struct {
	key string
	val []byte // as in the input
}

// members reads the members of the JSON object raw, in order. The values
// alias raw.
func members(raw []byte) ([]member, *Error) {
	d := decoder{data: raw}
	d.path = d.pathBuf[:0]
	d.ws()
	if err := d.objectStart(); err != nil {
		return nil, asError(err)
	}
	var out []member
	for first := true; ; first = false {
		key, ok, err := d.nextMember(first)
		if err != nil {
			return nil, asError(err)
		}
		if !ok {
			break
		}
		start := d.pos
		if err := d.skip(); err != nil {
			return nil, asError(err)
		}
		out = append(out, member{string(key), raw[start:d.pos]})
	}
	if err := d.end(); err != nil {
		return nil, asError(err)
	}
	return out, nil
}

// asError is the scanner's error as an *Error.
func asError(err error) *Error {
	if e, ok := err.(*Error); ok {
		return e
	}
	return &Error{Reason: err.Error(), Offset: -1}
}

// validJSON reports whether s is one JSON value.
func validJSON(s string) bool {
	d := decoder{data: []byte(s)}
	d.path = d.pathBuf[:0]
	d.ws()
	return d.skip() == nil && d.end() == nil
}

// restoreAnnotations turns the object back into the array; anything else
// becomes [] (OpenWhisk's Try(...).getOrElse(JsArray.empty)).
func restoreAnnotations(v []byte) []byte {
	ms, merr := members(v)
	if merr != nil {
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
func restoreResponse(v []byte) []byte {
	ms, merr := members(v)
	if merr != nil {
		return v // not an object: the reader fails, as OpenWhisk's
	}
	dst := []byte{'{'}
	sawResult := false
	n := 0
	for _, m := range ms {
		val := m.val
		if m.key == "result" {
			sawResult = true
			s, ok := jsonString(m.val)
			if !ok || !validJSON(s) {
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

// unsafeString views b, which nothing writes again, as a string.
func unsafeString(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }
