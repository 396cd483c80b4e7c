package kafkastore_test

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/go-whisk/activationstore/internal/activationtest"
	"github.com/go-whisk/activationstore/internal/kafkatest"
	"github.com/go-whisk/activationstore/kafkastore"
	"github.com/go-whisk/activationstore/primary/memory"
	"github.com/go-whisk/activationstore/store"
	"github.com/go-whisk/activationstore/store/storetest"
)

// bareStore is the memory primary with only the methods of store.Store:
// a primary without optional capabilities, as primary/couchdb is without
// DurationStats.
type bareStore struct{ contract }

// contract names store.Store so that the embedded field is not called Store.
type contract = store.Store

// TestConformanceStoreInPrimaryBarePrimary: over a primary without
// capabilities the Store's DurationStats says ErrUnsupported for every
// query, and its FilterView is the contract's default, which the suite's
// name behaviours check against the primary's actual answers.
func TestConformanceStoreInPrimaryBarePrimary(t *testing.T) {
	b := kafkatest.Start(t)
	s, _ := newStore(t, b, bareStore{memory.New(memory.WithFilterView(store.FilterViewV211))}, kafkastore.WithStoreInPrimary(true))
	storetest.Run(t, func(t *testing.T) store.Store { return s })
}

// TestStorePassesCapabilitiesThrough: the Store answers DurationStats and
// FilterView as its primary does, or, for a primary without them, as the
// store package asks of a store that cannot; its StoreBatch publishes
// (storetest's batch behaviours run in the conformance tests).
func TestStorePassesCapabilitiesThrough(t *testing.T) {
	b := kafkatest.Start(t)
	primary := memory.New(memory.WithFilterView(store.FilterViewElasticSearch))
	s, _ := newStore(t, b, primary, kafkastore.WithStoreInPrimary(true))
	ctx := ctxT(t)

	before := s.Stats().Published
	results, err := s.StoreBatch(ctx, []*store.Activation{activationtest.New("guest"), activationtest.New("guest")}, store.UserContext{})
	require.NoError(t, err)
	for i, r := range results {
		require.NoError(t, r.Err, "batch record %d", i)
	}
	assert.Equal(t, before+2, s.Stats().Published, "StoreBatch publishes each record to Kafka")
	assert.Equal(t, store.FilterViewElasticSearch, s.FilterView(), "the primary's name filter")

	var q store.DurationQuery
	for i, d := range []int64{10, 30} {
		a := activationtest.New("guest")
		a.Duration = &d
		a.Annotations = []store.Annotation{{Key: "binding", Value: json.RawMessage(`"guest/bnd"`)}}
		_, err := s.Store(ctx, a, store.UserContext{})
		require.NoError(t, err, "record %d", i)
		q = store.DurationQuery{Namespace: a.Namespace, Binding: "guest/bnd", Name: a.Name}
	}
	got, err := s.DurationStats(ctx, q, store.UserContext{})
	require.NoError(t, err)
	want, err := primary.DurationStats(ctx, q, store.UserContext{})
	require.NoError(t, err)
	assert.Equal(t, want, got, "the primary's answer")
	assert.Equal(t, int64(2), got.Count)
	_, err = s.DurationStats(ctx, store.DurationQuery{Namespace: "guest"}, store.UserContext{})
	assert.ErrorIs(t, err, store.ErrInvalid, "the primary's validation")

	bare, _ := newStore(t, b, bareStore{memory.New(memory.WithFilterView(store.FilterViewV210))})
	assert.Equal(t, store.FilterViewV211, bare.FilterView(), "a primary without FilterView matches as v2.1.1 (the contract's default)")
	_, err = bare.DurationStats(ctx, q, store.UserContext{})
	require.ErrorIs(t, err, store.ErrUnsupported)
	assert.Contains(t, err.Error(), "kafkastore_test.bareStore", "names the primary")

	require.NoError(t, s.Close())
	_, err = s.DurationStats(ctx, q, store.UserContext{})
	assert.ErrorIs(t, err, kafkastore.ErrClosed)
}

// TestStoreBatchStopsWithItsContext: a batch whose context has ended gives
// that error, for the batch and for each record it did not store.
func TestStoreBatchStopsWithItsContext(t *testing.T) {
	b := kafkatest.Start(t)
	s, _ := newStore(t, b, memory.New())
	ctx, cancel := context.WithCancel(ctxT(t))
	cancel()
	batch := make([]*store.Activation, 500)
	for i := range batch {
		batch[i] = activationtest.New("guest")
	}
	results, err := s.StoreBatch(ctx, batch, store.UserContext{})
	require.ErrorIs(t, err, context.Canceled)
	require.Len(t, results, len(batch))
	for i, r := range results {
		require.Error(t, r.Err, "record %d of a cancelled batch", i)
	}
	assert.Zero(t, s.Stats().Published, "nothing published under a cancelled context")
}
