package controller_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/go-whisk/activationstore/examples/controller"
	"github.com/go-whisk/activationstore/primary/memory"
	"github.com/go-whisk/activationstore/store"
)

// seeded returns a controller over a memory primary holding n activations
// of guest/hello, one millisecond apart.
func seeded(t *testing.T, n int) *controller.Controller {
	t.Helper()
	primary := memory.New()
	for i := range n {
		start := time.UnixMilli(1_700_000_000_000 + int64(i))
		_, err := primary.Store(context.Background(), &store.Activation{
			Namespace: "guest", Name: "hello", Subject: "guest-subject", ActivationID: controller.NewActivationID(),
			Start: start, End: start.Add(time.Millisecond), Version: store.DefaultVersion,
			Response: store.Response{Result: json.RawMessage(`{}`)},
		}, store.UserContext{})
		require.NoError(t, err)
	}
	c, err := controller.New(controller.WithActivationStore(primary))
	require.NoError(t, err)
	return c
}

func get(t *testing.T, srv *httptest.Server, path string) (int, []byte) {
	t.Helper()
	resp, err := http.Get(srv.URL + path)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, b
}

// TestListLimitsAsRestAPIs: the list rules of OpenWhisk's RestAPIs.scala.
// Limit absent: 30; limit=0: 200 (MAX_LIST_LIMIT); above 200: 400; a
// negative skip: 400.
func TestListLimitsAsRestAPIs(t *testing.T) {
	srv := httptest.NewServer(seeded(t, 250).Handler())
	defer srv.Close()
	const list = "/api/v1/namespaces/guest/activations"
	for _, c := range []struct {
		query string
		n     int
	}{
		{"", controller.DefaultListLimit},
		{"?limit=0", controller.MaxListLimit},
		{"?limit=200", 200},
		{"?limit=%2B7", 7},
		{"?limit=1", 1},
		{"?limit=0&skip=240", 10},
		{"?skip=0", 30},
		{"?limit=5&docs=true", 5},
		{"?name=hello&limit=3", 3},
		{"?name=%2Fhello&limit=3", 3}, // EntityPath drops empty segments
		{"?name=+&limit=3", 3},        // blank: no name
		{"?name=other", 0},
		{"?since=1700000000100&upto=1700000000104", 5},
	} {
		status, body := get(t, srv, list+c.query)
		require.Equal(t, http.StatusOK, status, "%s: %s", c.query, body)
		var got []map[string]any
		require.NoError(t, json.Unmarshal(body, &got), c.query)
		assert.Len(t, got, c.n, c.query)
	}
	for _, c := range []struct{ query, msg string }{
		{"?limit=201", "The value '201' is not in the range of 0 to 200 for activations."},
		{"?limit=-1", "The value '-1' is not in the range of 0 to 200 for activations."},
		{"?limit=99999999999", "The value '99999999999' is not an integer for activations."},
		{"?limit=ten", "The value 'ten' is not an integer for activations."},
		{"?skip=-1", "The value '-1' is not greater than or equal to 0 for activations."},
		{"?skip=x", "The value 'x' is not an integer for activations."},
		{"?count=true&docs=true", "The parameter 'docs' is not permitted with 'count'."},
		{"?count=maybe", "'maybe' is not a valid Boolean value"},
		{"?name=a/b/c", "Parameter may be a 'simple' name or 'package-name/simple' name: a/b/c"},
		{"?name=a%3Fb", "Parameter may be a 'simple' name or 'package-name/simple' name: a?b"},
		{"?since=yesterday", "Parameter is not a valid value for epoch seconds: yesterday"},
	} {
		status, body := get(t, srv, list+c.query)
		require.Equal(t, http.StatusBadRequest, status, "%s: %s", c.query, body)
		var e struct{ Error string }
		require.NoError(t, json.Unmarshal(body, &e))
		assert.Contains(t, e.Error, c.msg, c.query)
	}

	status, body := get(t, srv, list+"?count=true&skip=10")
	require.Equal(t, http.StatusOK, status, "%s", body)
	assert.JSONEq(t, `{"activations":240}`, string(body))
	status, _ = get(t, srv, "/api/v1/namespaces/_design/activations")
	assert.Equal(t, http.StatusBadRequest, status, "a namespace the store refuses")
	status, _ = get(t, srv, list+"/"+controller.NewActivationID())
	assert.Equal(t, http.StatusNotFound, status)
}

// The Go calls apply the same rules: limit 0 is an absent limit (30).
func TestActivationsLimitRules(t *testing.T) {
	c := seeded(t, 250)
	ctx := context.Background()
	got, err := c.Activations(ctx, store.Query{Namespace: "guest"}, store.UserContext{})
	require.NoError(t, err)
	assert.Len(t, got, controller.DefaultListLimit)
	got, err = c.Activations(ctx, store.Query{Namespace: "guest", Limit: controller.MaxListLimit}, store.UserContext{})
	require.NoError(t, err)
	assert.Len(t, got, controller.MaxListLimit)
	for _, q := range []store.Query{
		{Namespace: "guest", Limit: controller.MaxListLimit + 1},
		{Namespace: "guest", Limit: -1},
		{Namespace: "guest", Skip: -1},
	} {
		_, err := c.Activations(ctx, q, store.UserContext{})
		var bad *controller.BadRequestError
		require.True(t, errors.As(err, &bad), "%+v: %v", q, err)
	}
	_, err = c.CountActivations(ctx, store.Query{Namespace: "guest", Skip: -1}, store.UserContext{})
	var bad *controller.BadRequestError
	require.True(t, errors.As(err, &bad), "count with a negative skip: %v", err)

	req, err := controller.ParseListRequest("guest", url.Values{"limit": {"0"}, "name": {"pkg//act"}, "upto": {"-5"}})
	require.NoError(t, err)
	assert.Equal(t, store.Query{Namespace: "guest", Name: "pkg/act", Limit: controller.MaxListLimit, Upto: time.UnixMilli(-5).UTC()}, req.Query)
	req, err = controller.ParseListRequest("guest", url.Values{})
	require.NoError(t, err)
	assert.Equal(t, fmt.Sprint(controller.DefaultListLimit), fmt.Sprint(req.Query.Limit))
}
