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
	for _, ok := range []string{"guest", "guest/pkg", "whisk.system", "a", "a b", "user@example.com", "a-b&c", strings.Repeat("n", 256)} {
		assert.NoError(t, store.ValidateNamespace(ok), "%q is a valid EntityPath", ok)
	}
	for _, bad := range []string{"", "_design", "_design/x", "guest/_x", "../x", "a/../../b", "a/./b", ".", "a//b", "/a", "a/",
		"a\x00b", "a\nb", " a", "a ", "a%2Fb", "a\\b", "ns\u2215x", strings.Repeat("n", 257), strings.Repeat("n/", 300) + "n"} {
		err := store.ValidateNamespace(bad)
		require.ErrorIs(t, err, store.ErrInvalid, "%q", bad)
		var ie *store.InvalidError
		require.ErrorAs(t, err, &ie)
		assert.Equal(t, "namespace", ie.Field)
		assert.LessOrEqual(t, len(err.Error()), 300, "a 10 KB value is shortened in the error text")
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
	assert.ErrorIs(t, store.ValidateName("_all_docs"), store.ErrInvalid)
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
	trigger.End = time.Time{}
	trigger.Response.StatusCode = store.StatusApplicationError
	ts := trigger.Summary()
	assert.False(t, ts.HasEnd())
	assert.Nil(t, ts.Duration)
	assert.Zero(t, ts.Response.StatusCode, "no status code in the summary of an activation without end")
	assert.True(t, errors.Is(store.ConflictError("x"), store.ErrConflict))
}
