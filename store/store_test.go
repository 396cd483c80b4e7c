package store_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/go-whisk/activationstore/codec"
	"github.com/go-whisk/activationstore/primary/memory"
	"github.com/go-whisk/activationstore/store"
)

func valid() *store.Activation {
	start := time.UnixMilli(1_700_000_000_000)
	return &store.Activation{
		Namespace: "guest", Name: "hello", Subject: "guest-subject", ActivationID: strings.Repeat("ab", 16),
		Start: start, End: start.Add(time.Second), Version: "0.0.1",
		Response: store.Response{StatusCode: store.StatusSuccess, Result: json.RawMessage(`{}`)},
	}
}

func TestValidateNamespace(t *testing.T) {
	for _, ok := range []string{"guest", "guest/pkg", "whisk.system", "a", "a b", "user@example.com", "a-b&c", strings.Repeat("n", 256),
		"guest/_x", "guest/_", "guest/_ _", "a_", "0/_util", strings.Repeat("n", 256) + "/" + strings.Repeat("p", 256)} {
		assert.NoError(t, store.ValidateNamespace(ok), "%q is a valid EntityPath", ok)
	}
	for _, bad := range []string{"", "_design", "_design/x", "_", "_guest", "_ _/x", "../x", "a/../../b", "a/./b", ".", "a//b", "/a", "a/",
		"a\x00b", "a\nb", " a", "a ", "a%2Fb", "a\\b", "ns\u2215x", strings.Repeat("n", 257), strings.Repeat("n/", 300) + "n"} {
		err := store.ValidateNamespace(bad)
		require.ErrorIs(t, err, store.ErrInvalid, "%q", bad)
		var ie *store.InvalidError
		require.ErrorAs(t, err, &ie)
		assert.Equal(t, "namespace", ie.Field)
		assert.LessOrEqual(t, len(err.Error()), 300, "a 10 KB value is shortened in the error text")
	}
}

// TestEntityNamesAsOpenWhisk ports SchemaTests' EntityName cases: every name
// OpenWhisk accepts is valid, leading underscores included; only a
// namespace's first segment may not start with "_" (a CouchDB document id).
func TestEntityNamesAsOpenWhisk(t *testing.T) {
	accepted := []string{"a", "a b", "a@b.c&d", "a@&b", "_a", "_", "_ _", "a0", "a 0", "a.0", "a@@&", "0", "0.0", "0.0.0",
		"0a", "0.a", strings.Repeat("a", store.MaxNameLength), "_util", "_all_docs", "_design"}
	for _, n := range accepted {
		assert.NoError(t, store.ValidateEntityName(n), "name %q", n)
		assert.NoError(t, store.ValidateName(n), "query name %q", n)
		assert.NoError(t, store.ValidateName("pkg/"+n), "query name pkg/%s", n)
		assert.NoError(t, store.ValidateName(n+"/act"), "query name %s/act", n)
		assert.NoError(t, store.ValidateNamespace("guest/"+n), "namespace guest/%s", n)
		a := valid()
		a.Name = n
		a.Namespace = "guest/" + n
		assert.NoError(t, store.ValidateActivation(a), "activation %s/%s", a.Namespace, a.Name)
		if n[0] == '_' {
			assert.ErrorIs(t, store.ValidateNamespace(n), store.ErrInvalid, "namespace %q starts a document id with _", n)
		} else {
			assert.NoError(t, store.ValidateNamespace(n), "namespace %q", n)
		}
	}
	rejected := []string{"", " ", " xxx", "xxx ", "/", " /", "/ ", "0 ", "a=2b", "_ ", "a?b", "x#x", "a§b", "a  ", "a()b",
		"a{}b", "a \t", "-abc", "&abc", "a\n", strings.Repeat("a", store.MaxNameLength+1)}
	for _, n := range rejected {
		var ie *store.InvalidError
		require.ErrorAs(t, store.ValidateEntityName(n), &ie, "name %q", n)
		assert.Equal(t, "name", ie.Field)
		assert.ErrorIs(t, store.ValidateName(n), store.ErrInvalid, "query name %q", n)
		assert.ErrorIs(t, store.ValidateNamespace("guest/"+n), store.ErrInvalid, "namespace guest/%q", n)
	}
}

// TestErrorNamesTheCharacterWritten: a refused character is reported as
// the rune the caller wrote, never as the first byte of its UTF-8 encoding.
func TestErrorNamesTheCharacterWritten(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"präfix-ñ", "contains 'ä'"},
		{"ñame", "must start with a letter, digit or underscore, not 'ñ'"},
		{"a☃b", "contains '☃'"},
		{"a😀", "contains '😀'"},
		{"a\u202eb", `contains '\u202e'`},
		{"a\x00b", `contains '\x00'`},
		{"a\xffb", `contains '\xff'`},
		{"\xc3", `not '\xc3'`},
		{"a ", "must not end with a space"},
	} {
		err := store.ValidateEntityName(c.in)
		require.Error(t, err, "%q", c.in)
		assert.Contains(t, err.Error(), c.want, "%q", c.in)
		assert.NotContains(t, err.Error(), "Ã", "%q", c.in)
		err = store.ValidateNamespace("guest/" + c.in)
		require.Error(t, err, "%q", c.in)
		assert.Contains(t, err.Error(), c.want, "namespace guest/%q", c.in)
	}
}

// TestSubjectLengthCountsAsJava: OpenWhisk's Subject needs 5 characters of
// a trimmed Java string (UTF-16 code units), not 5 bytes.
func TestSubjectLengthCountsAsJava(t *testing.T) {
	for s, n := range map[string]int{"abcde": 5, "ééé": 3, "ééééé": 5, "☃☃☃☃": 4, "😀😀": 4, "😀😀😀": 6, "  abc  ": 3, "abcd ": 4, " abcde ": 5, "": 0} {
		assert.Equal(t, n, store.SubjectLength(s), "SubjectLength(%q)", s)
	}
	for _, ok := range []string{"abcde", "ééééé", "😀😀😀", " abcde", "guest-subject"} {
		a := valid()
		a.Subject = ok
		assert.NoError(t, store.ValidateActivation(a), "subject %q", ok)
	}
	for _, bad := range []string{"ééé", "☃☃☃☃", "😀😀", "abcd ", "  abc  ", "abcd", ""} {
		a := valid()
		a.Subject = bad
		var ie *store.InvalidError
		require.ErrorAs(t, store.ValidateActivation(a), &ie, "subject %q", bad)
		assert.Equal(t, "subject", ie.Field)
		assert.Contains(t, ie.Reason, "shorter than 5")
	}
}

func TestValidateActivationID(t *testing.T) {
	assert.NoError(t, store.ValidateActivationID("0123456789abcdef0123456789abcdef"))
	for _, bad := range []string{"", "0123456789ABCDEF0123456789ABCDEF", "0123456789abcdef0123456789abcde", "0123456789abcdef0123456789abcdef0",
		"0123456789abcdef0123456789abcdeg", "../3456789abcdef0123456789abcdef", "_design/89abcdef0123456789abcdef"} {
		assert.ErrorIs(t, store.ValidateActivationID(bad), store.ErrInvalid, "%q", bad)
	}
}

func TestValidateVersionAndName(t *testing.T) {
	for _, ok := range []string{"0.0.1", "1", "1.2", "10.20.30"} {
		assert.NoError(t, store.ValidateVersion(ok), ok)
	}
	for _, bad := range []string{"", "0.0.0", "0", "1.2.3.4", "a.b.c", "1..2", "-1.0.0", "1.0.0-beta"} {
		assert.ErrorIs(t, store.ValidateVersion(bad), store.ErrInvalid, bad)
	}
	assert.NoError(t, store.ValidateName("pkg/action"))
	assert.ErrorIs(t, store.ValidateName("a/b/c"), store.ErrInvalid)
	assert.NoError(t, store.ValidateName("_all_docs"), "a leading underscore is a valid OpenWhisk name")
	assert.NoError(t, store.ValidateName("_pkg/_util"))
	assert.ErrorIs(t, store.ValidateName("pkg//x"), store.ErrInvalid)
}

func TestValidateActivationNamesTheField(t *testing.T) {
	cases := map[string]func(a *store.Activation){
		"name":                func(a *store.Activation) { a.Name = "a/b" },
		"subject":             func(a *store.Activation) { a.Subject = "abc" },
		"cause":               func(a *store.Activation) { a.Cause = "nope" },
		"response.statusCode": func(a *store.Activation) { a.Response.StatusCode = -1 },
		"response.result":     func(a *store.Activation) { a.Response.Result = json.RawMessage(`{`) },
		"annotations[0].key":  func(a *store.Activation) { a.Annotations = []store.Annotation{{Value: json.RawMessage(`1`)}} },
		"annotations[1].value": func(a *store.Activation) {
			a.Annotations = []store.Annotation{{Key: "k"}, {Key: "k", Value: json.RawMessage(`x`)}}
		},
		"logs[1]":  func(a *store.Activation) { a.Logs = []string{"ok", "\xff"} },
		"duration": func(a *store.Activation) { d := int64(-1); a.Duration = &d },
	}
	for field, mutate := range cases {
		a := valid()
		mutate(a)
		var ie *store.InvalidError
		require.ErrorAs(t, store.ValidateActivation(a), &ie, field)
		assert.Equal(t, field, ie.Field)
	}
	assert.NoError(t, store.ValidateActivation(valid()))
	assert.ErrorIs(t, store.ValidateActivation(nil), store.ErrInvalid)
}

func TestParseLevel(t *testing.T) {
	for in, want := range map[string]store.Level{
		"STORE_ALWAYS": store.StoreAlways, "store_failures": store.StoreFailures,
		"Store_Failures_Not_Application_Errors": store.StoreFailuresNotApplicationErrors,
	} {
		got, err := store.ParseLevel(in)
		require.NoError(t, err)
		assert.Equal(t, want, got)
		assert.Equal(t, strings.ToUpper(in), got.String())
	}
	_, err := store.ParseLevel("sometimes")
	assert.ErrorIs(t, err, store.ErrInvalid)
}

// TestShouldStore ports OpenWhisk's storeAfterCheck decision table.
func TestShouldStore(t *testing.T) {
	no := false
	for _, c := range []struct {
		level    store.Level
		status   int
		blocking bool
		uc       store.UserContext
		want     bool
	}{
		{store.StoreAlways, store.StatusSuccess, true, store.UserContext{}, true},
		{store.StoreFailures, store.StatusSuccess, true, store.UserContext{}, false},
		{store.StoreFailures, store.StatusApplicationError, true, store.UserContext{}, true},
		{store.StoreFailuresNotApplicationErrors, store.StatusApplicationError, false, store.UserContext{}, false},
		{store.StoreFailuresNotApplicationErrors, store.StatusDeveloperError, false, store.UserContext{}, true},
		{store.StoreFailuresNotApplicationErrors, store.StatusWhiskError, false, store.UserContext{}, true},
		{store.StoreFailures, store.StatusSuccess, false, store.UserContext{ExtraLogging: true}, true},
		{store.StoreAlways, store.StatusWhiskError, true, store.UserContext{StoreActivations: &no}, false},
		{store.StoreAlways, store.StatusWhiskError, true, store.UserContext{StoreActivations: &no, ExtraLogging: true}, false},
	} {
		a := valid()
		a.Response.StatusCode = c.status
		levels := store.Levels{Blocking: store.StoreAlways, NonBlocking: store.StoreAlways}
		if c.blocking {
			levels.Blocking = c.level
		} else {
			levels.NonBlocking = c.level
		}
		assert.Equal(t, c.want, store.ShouldStore(a, c.blocking, levels, c.uc), "%+v", c)
	}
}

func TestStoreAfterCheckSkipsWithoutRev(t *testing.T) {
	s := memory.New()
	a := valid()
	info, stored, err := store.StoreAfterCheck(context.Background(), s, a, true, store.Levels{Blocking: store.StoreFailures}, store.UserContext{})
	require.NoError(t, err)
	assert.False(t, stored)
	assert.Equal(t, store.DocInfo{ID: "guest/" + a.ActivationID}, info)
	assert.Equal(t, 0, s.Len())
	_, stored, err = store.StoreAfterCheck(context.Background(), s, a, false, store.Levels{Blocking: store.StoreFailures}, store.UserContext{})
	require.NoError(t, err)
	assert.True(t, stored)
	assert.Equal(t, 1, s.Len())
}

func TestSummaryAndClone(t *testing.T) {
	a := valid()
	d := int64(999)
	a.Duration = &d
	a.Logs = []string{"x"}
	a.Annotations = []store.Annotation{{Key: "k", Value: json.RawMessage(`"v"`)}}
	s := a.Summary()
	assert.Nil(t, s.Response.Result)
	assert.Nil(t, s.Logs)
	assert.Empty(t, s.Subject)
	assert.Equal(t, int64(1000), *s.Duration, "the views compute end-start")
	c := a.Clone()
	c.Annotations[0].Value[1] = 'X'
	c.Logs[0] = "y"
	*c.Duration = 1
	assert.Equal(t, `"v"`, string(a.Annotations[0].Value))
	assert.Equal(t, "x", a.Logs[0])
	assert.Equal(t, int64(999), *a.Duration)

	trigger := valid()
	trigger.End = store.NoEnd
	trigger.Response.StatusCode = store.StatusApplicationError
	ts := trigger.Summary()
	assert.False(t, ts.HasEnd())
	assert.Nil(t, ts.Duration)
	assert.Zero(t, ts.Response.StatusCode, "no status code in the summary of an activation without end")
	assert.True(t, errors.Is(store.ConflictError("x"), store.ErrConflict))
}

func TestShownValueKeepsWholeCharacters(t *testing.T) {
	long := strings.Repeat("a", 63) + strings.Repeat("ä", 20) + "?"
	err := store.ValidateEntityName(long)
	require.Error(t, err)
	assert.NotContains(t, err.Error(), `\xc3`, "the shortened value ends at a rune boundary: %v", err)
	assert.Contains(t, err.Error(), "contains 'ä'")
}

// decodeWith encodes a valid activation with the codec, swaps one member's
// value, and decodes it again: OpenWhisk's reader checks, as the codec
// applies them.
func decodeWith(t *testing.T, member, value string) error {
	t.Helper()
	b, err := codec.MarshalActivation(valid())
	require.NoError(t, err)
	var m map[string]any
	require.NoError(t, json.Unmarshal(b, &m))
	m[member] = value
	b, err = json.Marshal(m)
	require.NoError(t, err)
	_, err = codec.UnmarshalActivation(b)
	return err
}

// TestValidationAgreesWithCodec: store and codec share one check for names
// and one for the subject's length, so what the store accepts the codec
// (and OpenWhisk) reads back, and what it refuses the codec refuses with
// the same reason.
func TestValidationAgreesWithCodec(t *testing.T) {
	for _, n := range []string{"a", "_util", "_", "_ _", "a@b.c&d", "präfix-ñ", "a?b", "a ", " a", "-a", "a☃", strings.Repeat("a", 256), strings.Repeat("a", 257)} {
		storeErr := store.ValidateEntityName(n)
		codecErr := decodeWith(t, "name", n)
		require.Equal(t, storeErr == nil, codecErr == nil, "name %q: store %v, codec %v", n, storeErr, codecErr)
		if storeErr != nil {
			var ie *store.InvalidError
			require.ErrorAs(t, storeErr, &ie)
			assert.Contains(t, codecErr.Error(), ie.Reason, "name %q", n)
		}
	}
	// Subjects: the same verdicts, control characters and length included.
	for _, s := range []string{"abcde", "ééé", "ééééé", "😀😀", "😀😀😀", "abcd ", " abcde", "\u00a0abcd", "  abc  ", "guest-subject",
		"ab\tcde", "abcd\x01", strings.Repeat("s", 2000)} {
		a := valid()
		a.Subject = s
		storeErr := store.ValidateActivation(a)
		codecErr := decodeWith(t, "subject", s)
		assert.Equal(t, storeErr == nil, codecErr == nil, "subject %q: store %v, codec %v", s, storeErr, codecErr)
	}
}
