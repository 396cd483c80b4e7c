package store_test

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

func requireInvalidField(t *testing.T, err error, field, reason string) {
	t.Helper()
	require.ErrorIs(t, err, store.ErrInvalid)
	var ie *store.InvalidError
	require.True(t, errors.As(err, &ie), "%T is not an *InvalidError", err)
	assert.Equal(t, field, ie.Field)
	assert.Contains(t, ie.Error(), reason)
}

// OpenWhisk's Subject is an ArgNormalizer: String.trim strips every char up
// to U+0020 at both ends before the length check.
func TestSubjectTrimmedAsJavaTrims(t *testing.T) {
	for in, want := range map[string]string{"  guest ": "  guest ", "\x00abcde": "\x00abcde", "\x1f\tguest\x7f\n": "\x1f\tguest\x7f\n"} {
		a := valid()
		a.Subject = in
		require.NoError(t, store.ValidateActivation(a), "%q", in)
		assert.Equal(t, want, a.Subject, "Validate does not change its input")
	}
	assert.Equal(t, "guest", store.TrimSubject("  guest "))
	assert.Equal(t, "abcde", store.TrimSubject("\x00abcde"))
	assert.Equal(t, "guest\x7f", store.TrimSubject("\x1f\tguest\x7f\n"), "U+007F is above U+0020: kept")
	assert.Equal(t, "a\u00a0b", store.TrimSubject("\u00a0a\u00a0b"[2:]), "U+00A0 is not trimmed")
	for _, bad := range []string{" abc ", "\x00abc\x00", "\t\n abcd\r", "    "} {
		a := valid()
		a.Subject = bad
		requireInvalidField(t, store.ValidateActivation(a), "subject", "once trimmed")
	}
}

// response.size is a Scala Int: OpenWhisk would read 2147484011 as -2147483285.
func TestSizeBeyondScalaIntRefused(t *testing.T) {
	a := valid()
	for _, ok := range []int64{0, 1, store.MaxScalaInt} {
		a.Response.Size = &ok
		require.NoError(t, store.ValidateActivation(a))
	}
	big := int64(2147484011)
	a.Response.Size = &big
	requireInvalidField(t, store.ValidateActivation(a), "response.size", "Scala Int")
}

// spray-json reads numbers through java.math.BigDecimal and refuses
// literals of more than 100 characters.
func TestNumberProblem(t *testing.T) {
	for _, ok := range []string{"0", "-1", "1.5", "1e2147483647", "1e-2147483647", "1E+2147483647", "-1.0e-2147483646",
		"1.5e2147483647", "1e0000000000002147483647", strings.Repeat("9", 100)} {
		assert.Empty(t, store.NumberProblem([]byte(ok)), "%s", ok)
	}
	for _, bad := range []string{"1e2147483648", "1e-2147483648", "1e-2147483649", "0.5e-2147483648", "-1.0e-2147483647", "1.00e-2147483646", "1e99999999999999999999",
		strings.Repeat("9", 101), "1e" + strings.Repeat("9", 98)} {
		assert.NotEmpty(t, store.NumberProblem([]byte(bad)), "%s", bad)
	}
	a := valid()
	a.Response.Result = json.RawMessage(`{"x":[1e2147483648]}`)
	requireInvalidField(t, store.ValidateActivation(a), "response.result", "exponent")
	a = valid()
	a.Annotations = []store.Annotation{{Key: "k", Value: json.RawMessage(`1e2147483648`)}}
	requireInvalidField(t, store.ValidateActivation(a), "annotations[0].value", "exponent")
	a = valid()
	a.Response.Result = json.RawMessage(`{"s":"1e2147483648"}`)
	require.NoError(t, store.ValidateActivation(a), "a string is not a number")
	a.Response.Result = json.RawMessage(strings.Repeat("[", store.MaxRawNesting) + strings.Repeat("]", store.MaxRawNesting))
	require.NoError(t, store.ValidateActivation(a))
	a.Response.Result = json.RawMessage(strings.Repeat("[", store.MaxRawNesting+1) + strings.Repeat("]", store.MaxRawNesting+1))
	requireInvalidField(t, store.ValidateActivation(a), "response.result", "deeper")
}

// The zero time.Time is year 1, an end like any other; only epoch 0 is
// OpenWhisk's "no end".
func TestZeroTimeIsNotNoEnd(t *testing.T) {
	a := valid()
	a.Start, a.End = time.Time{}, time.Time{}
	assert.True(t, a.HasEnd())
	assert.Equal(t, int64(0), a.DurationMillis())
	s := a.Summary()
	require.NotNil(t, s.Duration)
	assert.True(t, s.HasEnd())
	assert.Equal(t, int64(-62135596800000), s.End.UnixMilli())

	a.End = store.NoEnd
	assert.False(t, a.HasEnd())
	assert.False(t, a.Summary().HasEnd())
	assert.Equal(t, int64(0), store.NoEnd.UnixMilli())
}

func TestNormalize(t *testing.T) {
	a := valid()
	a.Subject, a.Version, a.Namespace = "  guest ", "1.02", "guest//pkg/"
	n := store.Normalize(a)
	assert.Equal(t, "guest", n.Subject)
	assert.Equal(t, "1.2.0", n.Version)
	assert.Equal(t, "guest/pkg", n.Namespace)
	assert.Equal(t, "  guest ", a.Subject, "Normalize copies")
	for in, want := range map[string]string{"": "0.0.1", "0.0.1": "0.0.1", "3": "3.0.0", "01.002.0003": "1.2.3", "1.2": "1.2.0", "x": "x"} {
		assert.Equal(t, want, store.NormalizeVersion(in), "%q", in)
	}
}
