package controller_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/go-whisk/activationstore/examples/controller"
	"github.com/go-whisk/activationstore/primary/memory"
	"github.com/go-whisk/activationstore/store"
)

func TestTriggerActivationStoredAndListed(t *testing.T) {
	ctx := context.Background()
	primary := memory.New()
	c, err := controller.New(controller.WithActivationStore(primary))
	require.NoError(t, err)
	ruled := controller.NewActivationID()
	a, err := c.FireTrigger(ctx, "guest", "tick", json.RawMessage(`{"n":1}`), []controller.RuleOutcome{
		{Rule: "guest/r1", Action: "guest/a1", ActivationID: ruled},
		{Rule: "guest/r2", Action: "guest/a2", Err: "action not found"},
	}, store.UserContext{})
	require.NoError(t, err)
	got, err := c.Activation(ctx, "guest", a.ActivationID, store.UserContext{})
	require.NoError(t, err)
	assert.False(t, got.HasEnd(), "triggers have no end")
	assert.Nil(t, got.Duration)
	require.Len(t, got.Logs, 2)
	assert.Contains(t, got.Logs[0], ruled)
	assert.Contains(t, got.Logs[1], `"error":"action not found"`)
	list, err := c.Activations(ctx, store.Query{Namespace: "guest", Name: "tick"}, store.UserContext{})
	require.NoError(t, err)
	require.Len(t, list, 1)

	none, err := c.FireTrigger(ctx, "guest", "idle", nil, nil, store.UserContext{})
	require.NoError(t, err)
	assert.Nil(t, none, "a trigger without rules records nothing")
	assert.Equal(t, 1, primary.Len())
}

func TestSequenceActivation(t *testing.T) {
	ctx := context.Background()
	primary := memory.New()
	c, err := controller.New(controller.WithActivationStore(primary), controller.WithStoreLevels(store.Levels{Blocking: store.StoreFailures}))
	require.NoError(t, err)
	start := time.UnixMilli(1_700_000_000_000)
	comp := func(ms int64, status int) *store.Activation {
		return &store.Activation{ActivationID: controller.NewActivationID(), Duration: &ms, Response: store.Response{StatusCode: status, Result: json.RawMessage(`{"r":1}`)}}
	}
	parts := []*store.Activation{comp(10, 0), comp(15, 1)}
	seq := controller.SequenceResult{Namespace: "guest", Name: "seq", Path: "guest/seq", Components: parts, Start: start}
	a, err := c.CompleteSequence(ctx, seq, true, store.UserContext{})
	require.NoError(t, err)
	got, err := primary.Get(ctx, "guest", a.ActivationID, store.UserContext{})
	require.NoError(t, err, "a failed blocking sequence is stored at STORE_FAILURES")
	assert.Equal(t, []string{parts[0].ActivationID, parts[1].ActivationID}, got.Logs)
	assert.Equal(t, int64(25), *got.Duration)
	assert.Equal(t, store.StatusApplicationError, got.Response.StatusCode)
	kind, _ := got.Annotation("kind")
	assert.JSONEq(t, `"sequence"`, string(kind))

	ok := controller.SequenceResult{Namespace: "guest", Name: "seq", Path: "guest/seq", Components: []*store.Activation{comp(5, 0)}, Start: start}
	_, err = c.CompleteSequence(ctx, ok, true, store.UserContext{})
	require.NoError(t, err)
	assert.Equal(t, 1, primary.Len(), "a successful blocking sequence is not stored at STORE_FAILURES")
	_, err = c.CompleteSequence(ctx, ok, false, store.UserContext{})
	require.NoError(t, err)
	assert.Equal(t, 2, primary.Len(), "the non-blocking level (STORE_ALWAYS) stores it")
}

func TestActivationIDsAreValid(t *testing.T) {
	for range 100 {
		require.NoError(t, store.ValidateActivationID(controller.NewActivationID()))
	}
}
