package memory_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/go-whisk/activationstore/primary/memory"
	"github.com/go-whisk/activationstore/store"
	"github.com/go-whisk/activationstore/store/storetest"
)

func TestConformanceElasticSearchView(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		return memory.New(memory.WithFilterView(store.FilterViewElasticSearch))
	})
}

func TestDurationStats(t *testing.T) {
	ctx := context.Background()
	s := memory.New()
	base := time.UnixMilli(1_700_000_000_000)
	n := 0
	add := func(ns, name string, start time.Time, dur *int64, ann ...store.Annotation) {
		n++
		a := &store.Activation{Namespace: ns, Name: name, Subject: "guest-subject",
			ActivationID: "0000000000000000000000000000" + string("0123456789abcdef"[n/16]) + "00" + string("0123456789abcdef"[n%16]),
			Start:        start, End: start.Add(time.Second), Version: store.DefaultVersion, Duration: dur, Annotations: ann}
		_, err := s.Store(ctx, a, store.UserContext{})
		require.NoError(t, err)
	}
	d := func(v int64) *int64 { return &v }
	add("guest", "hello", base, d(10))
	add("guest", "hello", base.Add(time.Second), d(20))
	add("guest", "hello", base.Add(2*time.Second), nil) // counted, not averaged
	add("guest", "hello-world", base.Add(time.Second), d(1000))
	add("Guest", "hello", base.Add(time.Second), d(1000))
	add("guest", "hello", base.Add(time.Second), d(40), store.Annotation{Key: "binding", Value: json.RawMessage(`"guest/bnd"`)})
	add("guest", "hello", base.Add(-time.Second), d(1000)) // before the window

	got, err := s.DurationStats(ctx, store.DurationQuery{Namespace: "guest", Action: "guest/hello", Since: base}, store.UserContext{})
	require.NoError(t, err)
	assert.Equal(t, int64(3), got.Count)
	require.NotNil(t, got.Average)
	assert.InDelta(t, 15.0, *got.Average, 1e-9)

	got, err = s.DurationStats(ctx, store.DurationQuery{Namespace: "guest", Binding: "guest/bnd", Name: "hello", Since: base}, store.UserContext{})
	require.NoError(t, err)
	assert.Equal(t, int64(1), got.Count)
	require.NotNil(t, got.Average)
	assert.InDelta(t, 40.0, *got.Average, 1e-9)

	got, err = s.DurationStats(ctx, store.DurationQuery{Namespace: "guest", Action: "guest/missing"}, store.UserContext{})
	require.NoError(t, err)
	assert.Equal(t, int64(0), got.Count)
	assert.Nil(t, got.Average, "no duration: no average")

	_, err = s.DurationStats(ctx, store.DurationQuery{Namespace: "guest"}, store.UserContext{})
	require.ErrorIs(t, err, store.ErrInvalid)
	_, err = s.DurationStats(ctx, store.DurationQuery{Namespace: "guest", Action: "a/b/c/d"}, store.UserContext{})
	require.ErrorIs(t, err, store.ErrInvalid)
}
