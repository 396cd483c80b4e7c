package store_test

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/go-whisk/activationstore/store"
)

// TestPathFilter spells out the views' JavaScript for each annotation shape;
// primary/couchdb's TestPathFilterMatchesViewJavaScript checks the same
// function against the JavaScript itself.
func TestPathFilter(t *testing.T) {
	ann := func(kv ...string) []store.Annotation {
		var out []store.Annotation
		for i := 0; i < len(kv); i += 2 {
			out = append(out, store.Annotation{Key: kv[i], Value: json.RawMessage(kv[i+1])})
		}
		return out
	}
	for _, c := range []struct {
		name       string
		ann        []store.Annotation
		v210, v211 string
	}{
		{"no annotations", nil, "act", "act"},
		{"plain path", ann("path", `"ns/act"`), "act", "act"},
		{"packaged path", ann("path", `"ns/pkg/act"`), "pkg/act", "pkg/act"},
		{"four segments", ann("path", `"ns/a/b/act"`), "act", "act"},
		{"empty package segment", ann("path", `"ns//act"`), "/act", "/act"},
		{"path null", ann("path", `null`), "act", "act"},
		{"path number", ann("path", `3`), "act", "act"},
		{"path object", ann("path", `{"a":"b/c/d"}`), "act", "act"},
		{"path with spaces", ann("path", ` "ns/pkg/act" `), "pkg/act", "pkg/act"},
		{"first path wins in v2.1.0, last in v2.1.1", ann("path", `"ns/p1/act"`, "path", `"ns/p2/act"`), "p1/act", "p2/act"},
		{"null path first", ann("path", `null`, "path", `"ns/p2/act"`), "act", "p2/act"},
		{"binding string", ann("path", `"ns/pkg/act"`, "binding", `"ns/bnd"`), "pkg/act", "bnd/act"},
		{"binding before path", ann("binding", `"ns/bnd"`, "path", `"ns/pkg/act"`), "pkg/act", "bnd/act"},
		{"binding alone", ann("binding", `"ns/bnd"`), "act", "bnd/act"},
		{"binding three segments", ann("binding", `"ns/bnd/x"`), "act", "bnd/act"},
		{"binding without slash", ann("binding", `"ns"`), "act", "undefined/act"},
		{"binding string 0", ann("binding", `"0"`), "act", "undefined/act"},
		{"binding leading slash", ann("binding", `"/bnd"`), "act", "bnd/act"},
		{"binding null", ann("path", `"ns/pkg/act"`, "binding", `null`), "pkg/act", "pkg/act"},
		{"binding empty", ann("path", `"ns/pkg/act"`, "binding", `""`), "pkg/act", "pkg/act"},
		{"binding false", ann("path", `"ns/pkg/act"`, "binding", `false`), "pkg/act", "pkg/act"},
		{"binding 0", ann("path", `"ns/pkg/act"`, "binding", `0`), "pkg/act", "pkg/act"},
		{"binding -0.0", ann("path", `"ns/pkg/act"`, "binding", `-0.0`), "pkg/act", "pkg/act"},
		{"binding 0e5", ann("path", `"ns/pkg/act"`, "binding", `0e5`), "pkg/act", "pkg/act"},
		{"binding underflows to 0", ann("path", `"ns/pkg/act"`, "binding", `1e-400`), "pkg/act", "pkg/act"},
		{"binding number", ann("path", `"ns/pkg/act"`, "binding", `7`), "pkg/act", "act"},
		{"binding overflows to Infinity", ann("path", `"ns/pkg/act"`, "binding", `1e400`), "pkg/act", "act"},
		{"binding true", ann("path", `"ns/pkg/act"`, "binding", `true`), "pkg/act", "act"},
		{"binding empty object", ann("path", `"ns/pkg/act"`, "binding", `{}`), "pkg/act", "act"},
		{"binding empty array", ann("path", `"ns/pkg/act"`, "binding", `[]`), "pkg/act", "act"},
		{"binding array of string", ann("path", `"ns/pkg/act"`, "binding", `["ns/bnd"]`), "pkg/act", "act"},
		{"last binding wins", ann("binding", `"ns/b1"`, "binding", `null`, "path", `"ns/pkg/act"`), "pkg/act", "pkg/act"},
		{"last binding wins again", ann("binding", `null`, "binding", `"ns/b2"`), "act", "b2/act"},
		{"path empty string", ann("path", `""`), "act", "act"},
		{"key is case sensitive", ann("Path", `"ns/pkg/act"`, "Binding", `"ns/bnd"`), "act", "act"},
		{"absent value is null", []store.Annotation{{Key: "binding"}, {Key: "path", Value: json.RawMessage(`"ns/pkg/act"`)}}, "pkg/act", "pkg/act"},
	} {
		a := &store.Activation{Name: "act", Annotations: c.ann}
		assert.Equal(t, c.v210, store.FilterViewV210.PathFilter(a), "v2.1.0: %s", c.name)
		assert.Equal(t, c.v211, store.FilterViewV211.PathFilter(a), "v2.1.1: %s", c.name)
	}
	assert.True(t, store.FilterViewV210.Valid())
	assert.True(t, store.FilterViewV211.Valid())
	assert.False(t, store.FilterView("whisks-filters.v9").Valid())
	assert.False(t, store.FilterView("").Valid())
}
