package elasticsearch

import (
	"errors"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/go-whisk/activationstore/store"
)

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
