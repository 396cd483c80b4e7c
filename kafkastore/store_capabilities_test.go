package kafkastore_test

import (
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
// store package asks of a store that cannot; it claims no StoreBatch.
func TestStorePassesCapabilitiesThrough(t *testing.T) {
	b := kafkatest.Start(t)
	primary := memory.New(memory.WithFilterView(store.FilterViewElasticSearch))
	s, _ := newStore(t, b, primary, kafkastore.WithStoreInPrimary(true))
	ctx := ctxT(t)

	_, isBatch := any(s).(store.BatchStorer)
	assert.False(t, isBatch, "writes go to Kafka: no StoreBatch straight to the primary")
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
