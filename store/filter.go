package store

import (
	"bytes"
	"encoding/json"
	"strconv"
	"strings"
)

// FilterView names a version of OpenWhisk's name-filter view: the CouchDB
// design document whose keys decide which activations a Query.Name selects.
// Its versions differ for activations made through a package binding.
type FilterView string

const (
	// FilterViewV210 is whisks-filters.v2.1.0 (OpenWhisk before #4211, and the
	// era of the Kafka activation store PR): an activation is listed under the
	// package of its "path" annotation ("ns/pkg/action" gives "pkg/action").
	FilterViewV210 FilterView = "whisks-filters.v2.1.0"
	// FilterViewV211 is whisks-filters.v2.1.1 (OpenWhisk master): under the
	// package of its "binding" annotation when invoked through a binding,
	// else as FilterViewV210.
	FilterViewV211 FilterView = "whisks-filters.v2.1.1"
	// FilterViewElasticSearch is not a CouchDB view but the name filter of
	// OpenWhisk's ElasticSearchActivationStore, made exact: a Query with
	// Name n selects the activations of the query's namespace whose
	// document "path" (codec.ElasticsearchPath, a rule of the document
	// form) is namespace + "/" + n. primary/elasticsearch answers with it.
	FilterViewElasticSearch FilterView = "elasticsearch"
)

// Valid reports whether v is one of the known versions of the CouchDB view
// (FilterViewElasticSearch is not one).
func (v FilterView) Valid() bool { return v == FilterViewV210 || v == FilterViewV211 }

// PathFilter returns the name under which view v lists a, the value of the
// view's pathFilter(doc): a Query whose Name equals it selects a. It
// computes exactly what the view's JavaScript computes, for every shape of
// annotation:
//
//   - v2.1.0 reads the first "path" annotation. A string of three segments
//     "ns/pkg/action" gives "pkg/" + a.Name; any other value (a string of
//     another length, null, a number: split throws, and the view catches)
//     gives a.Name.
//   - v2.1.1 reads the last "path" and the last "binding" annotation. A
//     truthy binding (in JavaScript's sense: not null, false, 0 or "") that
//     is a string gives its second segment + "/" + a.Name, "undefined/" +
//     a.Name when it has none; a truthy binding that is not a string makes
//     split throw, and the view's catch gives a.Name. A falsy binding falls
//     back to the path, read as in v2.1.0 but only when truthy.
//
// PathFilter panics for any other v (FilterViewElasticSearch included: its
// name is codec.ElasticsearchName), a programming error.
//
// One difference is left: a string value holding an unpaired surrogate
// escape (\ud800) is read with U+FFFD in its place, where JavaScript keeps
// the surrogate.
func (v FilterView) PathFilter(a *Activation) string {
	if !v.Valid() {
		panic("store: FilterView(" + strconv.Quote(string(v)) + ").PathFilter: not a CouchDB view (for FilterViewElasticSearch use codec.ElasticsearchName)")
	}
	if v == FilterViewV210 {
		for _, an := range a.Annotations {
			if an.Key == "path" {
				return packaged(an.Value, a.Name)
			}
		}
		return a.Name
	}
	path, _ := a.Annotation("path")
	binding, _ := a.Annotation("binding")
	if truthy(binding) {
		b, ok := jsString(binding)
		if !ok {
			return a.Name // binding.split is not a function: caught
		}
		_, rest, found := strings.Cut(b, "/")
		if !found {
			return "undefined/" + a.Name // b[1] is undefined
		}
		pkg, _, _ := strings.Cut(rest, "/")
		return pkg + "/" + a.Name
	}
	if truthy(path) {
		return packaged(path, a.Name)
	}
	return a.Name
}

// packaged is the views' reading of a path annotation: p[1] + "/" + name
// when the value is a string of exactly three segments, else name.
func packaged(raw json.RawMessage, name string) string {
	p, ok := jsString(raw)
	if !ok {
		return name
	}
	if segs := strings.Split(p, "/"); len(segs) == 3 {
		return segs[1] + "/" + name
	}
	return name
}

// jsString returns the value of a JSON string.
func jsString(raw json.RawMessage) (string, bool) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || raw[0] != '"' {
		return "", false
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", false
	}
	return s, true
}

// truthy is JavaScript's truthiness of a JSON value; an absent value is
// undefined, which is falsy.
func truthy(raw json.RawMessage) bool {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return false
	}
	switch c := raw[0]; {
	case c == 'n', c == 'f': // null, false
		return false
	case c == 't', c == '{', c == '[': // true, objects and arrays (even empty ones)
		return true
	case c == '"':
		return len(raw) > 2 // only "" is the empty string
	default: // a number: falsy when its double is ±0, as 0, -0.0 or 1e-400
		// An exponent out of range gives ±Inf (truthy) or 0 (falsy), as in
		// JavaScript; the error that comes with it changes nothing.
		f, _ := strconv.ParseFloat(string(raw), 64)
		return f != 0
	}
}
