package invoker_test

import (
	"context"
	"encoding/json"
	"errors"
	"regexp"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/go-whisk/activationstore/codec"
	"github.com/go-whisk/activationstore/examples/invoker"
	"github.com/go-whisk/activationstore/internal/kafkatest"
	"github.com/go-whisk/activationstore/kafkastore"
	"github.com/go-whisk/activationstore/kafkastore/persister"
	"github.com/go-whisk/activationstore/primary/memory"
	"github.com/go-whisk/activationstore/store"
)

func storeSkipHeader(m kafka.Message) (string, bool) {
	for _, h := range m.Headers {
		if h.Key == kafkastore.HeaderStoreSkip {
			return string(h.Value), true
		}
	}
	return "", false
}

// TestBlockingStoreDecisionTravelsInAckHeader: storeAfterCheck applies to
// blocking activations. The ack carries the activation whatever the
// decision; a refusal is a record header, which a persister reading the
// ack topic honours.
func TestBlockingStoreDecisionTravelsInAckHeader(t *testing.T) {
	b := kafkatest.Start(t)
	topic := invoker.AckTopic(5)
	b.CreateTopic(t, topic, 1, nil)
	acks := newAcks(t, b.Addr())
	local := memory.New()
	inv, err := invoker.New(5, invoker.WithActivationStore(local), invoker.WithAckPublisher(acks),
		invoker.WithStoreLevels(store.Levels{Blocking: store.StoreFailures}))
	require.NoError(t, err)

	no := false
	extra := codec.TransactionID{ID: "0123456789abcdef0123456789abcdef", Start: time.UnixMilli(1_700_000_000_000), ExtraLogging: true}
	cases := []struct {
		name   string
		job    invoker.Job
		status int
		skip   string // "": stored
	}{
		{"success at STORE_FAILURES", invoker.Job{}, store.StatusSuccess, kafkastore.StoreSkipLevel},
		{"failure at STORE_FAILURES", invoker.Job{}, store.StatusDeveloperError, ""},
		{"storeActivations=false", invoker.Job{User: store.UserContext{StoreActivations: &no}}, store.StatusDeveloperError, kafkastore.StoreSkipUser},
		{"extra logging in the transid", invoker.Job{TransID: extra}, store.StatusSuccess, ""},
		{"extra logging in the user context only", invoker.Job{User: store.UserContext{ExtraLogging: true}}, store.StatusSuccess, kafkastore.StoreSkipLevel},
		{"storeActivations=false beats extra logging", invoker.Job{TransID: extra, User: store.UserContext{StoreActivations: &no}}, store.StatusSuccess, kafkastore.StoreSkipUser},
	}
	ctx := context.Background()
	as := make([]*store.Activation, len(cases))
	for i, c := range cases {
		as[i] = activation(c.status)
		c.job.Controller, c.job.Blocking = 5, true
		require.NoError(t, inv.Complete(ctx, c.job, as[i]), c.name)
	}
	assert.Equal(t, 0, local.Len(), "blocking activations travel in their acks, never through the invoker's store")

	recs := readRecords(t, b.Addr(), topic, len(cases))
	for i, c := range cases {
		m, err := codec.Decode(recs[i].Value)
		require.NoError(t, err, c.name)
		combined, ok := m.(*codec.CombinedMessage)
		require.True(t, ok, "%s: a blocking activation is acked with a combined message, got %T", c.name, m)
		require.NotNil(t, combined.Activation(), "%s: the controller needs the activation", c.name)
		assert.Equal(t, as[i].ActivationID, combined.Activation().ActivationID, c.name)
		reason, marked := storeSkipHeader(recs[i])
		assert.Equal(t, c.skip != "", marked, "%s: header %s present", c.name, kafkastore.HeaderStoreSkip)
		assert.Equal(t, c.skip, reason, c.name)
		if c.job.TransID.ExtraLogging {
			assert.True(t, combined.TransID.ExtraLogging, "%s: the ack keeps the transid's extra logging", c.name)
		}
	}

	// A persister reading the ack topic stores exactly the unmarked ones.
	primary := memory.New()
	p, err := persister.New(primary, kafkastore.WithBrokers(b.Addr()),
		persister.WithTopicPattern(regexp.MustCompile("^"+regexp.QuoteMeta(topic)+"$")),
		persister.WithGroupID(kafkatest.Topic(t, "group")), persister.WithDeadLetterTopic(kafkatest.Topic(t, "dlq")),
		persister.WithGroupTimeouts(3*time.Second, 3*time.Second, 100*time.Millisecond),
		persister.WithTopicRefresh(200*time.Millisecond), persister.WithBatch(100, 1<<20, 5*time.Millisecond),
		persister.WithCommitInterval(100*time.Millisecond))
	require.NoError(t, err)
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- p.Run(runCtx) }()
	defer func() {
		stop()
		select {
		case err := <-done:
			assert.NoError(t, err)
		case <-time.After(30 * time.Second):
			t.Error("the persister did not stop within 30 s")
		}
	}()
	deadline := time.Now().Add(30 * time.Second)
	for s := p.Stats(); s.Persisted+s.StoreSkipped < int64(len(cases)); s = p.Stats() {
		require.True(t, time.Now().Before(deadline), "persister settled %d+%d of %d acks within 30 s", s.Persisted, s.StoreSkipped, len(cases))
		time.Sleep(20 * time.Millisecond)
	}
	s := p.Stats()
	assert.Equal(t, int64(2), s.Persisted, "stored: the failure, and the success with extra logging")
	assert.Equal(t, int64(4), s.StoreSkipped)
	for i, c := range cases {
		_, err := primary.Get(ctx, "guest", as[i].ActivationID, store.UserContext{})
		if c.skip == "" {
			assert.NoError(t, err, "%s: stored by the persister", c.name)
		} else {
			assert.True(t, errors.Is(err, store.ErrNotFound), "%s: not stored, got %v", c.name, err)
		}
	}
}

// TestStoreActivationsFalseAppliesToNonBlocking: the user's limit, not
// only the levels, governs non-blocking activations; the transid's extra
// logging does not override it.
func TestStoreActivationsFalseAppliesToNonBlocking(t *testing.T) {
	b := kafkatest.Start(t)
	// Acks go to the controller's completed0, which another test of the
	// package creates too: under KAFKATEST=apache they share one broker.
	if err := b.CreateTopicContext(context.Background(), invoker.AckTopic(0), 1, nil); err != nil && !errors.Is(err, kafka.TopicAlreadyExists) {
		t.Fatalf("create %s: %v", invoker.AckTopic(0), err)
	}
	acks := newAcks(t, b.Addr())
	primary := memory.New()
	inv, err := invoker.New(0, invoker.WithActivationStore(primary), invoker.WithAckPublisher(acks))
	require.NoError(t, err)
	no := false
	extra := codec.TransactionID{ID: "sid_extra", Start: time.Now(), ExtraLogging: true}
	ctx := context.Background()
	refused, forced := activation(store.StatusSuccess), activation(store.StatusSuccess)
	require.NoError(t, inv.Complete(ctx, invoker.Job{TransID: extra, User: store.UserContext{StoreActivations: &no}}, refused))
	inv2, err := invoker.New(0, invoker.WithActivationStore(primary), invoker.WithAckPublisher(acks),
		invoker.WithStoreLevels(store.Levels{NonBlocking: store.StoreFailures}))
	require.NoError(t, err)
	require.NoError(t, inv2.Complete(ctx, invoker.Job{TransID: extra}, forced))
	_, err = primary.Get(ctx, "guest", refused.ActivationID, store.UserContext{})
	assert.ErrorIs(t, err, store.ErrNotFound, "storeActivations=false")
	_, err = primary.Get(ctx, "guest", forced.ActivationID, store.UserContext{})
	assert.NoError(t, err, "extra logging in the transid forces storing past the level")
	for _, rec := range readRecords(t, b.Addr(), invoker.AckTopic(0), 2) {
		_, marked := storeSkipHeader(rec)
		assert.False(t, marked, "a completion carries no activation, so no header")
	}
}

// ackInstance returns the member era's controllers read the instance from.
func ackInstance(t *testing.T, value []byte, key string) map[string]any {
	t.Helper()
	var ack map[string]json.RawMessage
	require.NoError(t, json.Unmarshal(value, &ack))
	require.Contains(t, ack, key, "ack %s", value)
	var in map[string]any
	require.NoError(t, json.Unmarshal(ack[key], &in))
	return in
}

// TestAcksReadableByEachEra: by default the instance is a complete current
// InvokerInstanceId under "instance" (what OpenWhisk 1.0.0, 2.0.0 and
// master require); WithAckEra(codec.EraPR) writes the v1 id under
// "invoker".
func TestAcksReadableByEachEra(t *testing.T) {
	b := kafkatest.Start(t)
	b.CreateTopic(t, invoker.AckTopic(1), 1, nil)
	b.CreateTopic(t, invoker.AckTopic(2), 1, nil)
	acks := newAcks(t, b.Addr())
	ctx := context.Background()
	master, err := invoker.New(3, invoker.WithActivationStore(memory.New()), invoker.WithAckPublisher(acks))
	require.NoError(t, err)
	pr, err := invoker.New(3, invoker.WithActivationStore(memory.New()), invoker.WithAckPublisher(acks), invoker.WithAckEra(codec.EraPR))
	require.NoError(t, err)
	for _, inv := range []*invoker.Invoker{master, pr} {
		ctl := 1
		if inv == pr {
			ctl = 2
		}
		require.NoError(t, inv.Complete(ctx, invoker.Job{Controller: ctl, Blocking: true}, activation(store.StatusSuccess)))
		require.NoError(t, inv.Complete(ctx, invoker.Job{Controller: ctl}, activation(store.StatusSuccess)))
	}

	wantMaster := map[string]any{"instance": 3.0, "uniqueName": "invoker3", "userMemory": "1024 MB",
		"instanceType": "invoker", "tags": []any{}, "dedicatedNamespaces": []any{}}
	for _, rec := range readRecords(t, b.Addr(), invoker.AckTopic(1), 2) {
		assert.Equal(t, wantMaster, ackInstance(t, rec.Value, "instance"))
		assert.NotContains(t, string(rec.Value), `"invoker":`)
	}
	wantPR := map[string]any{"instance": 3.0, "uniqueName": "invoker3", "userMemory": "1024 MB"}
	for _, rec := range readRecords(t, b.Addr(), invoker.AckTopic(2), 2) {
		assert.Equal(t, wantPR, ackInstance(t, rec.Value, "invoker"))
		assert.NotContains(t, string(rec.Value), `"instance":{`)
	}

	_, err = invoker.New(0, invoker.WithActivationStore(memory.New()), invoker.WithAckPublisher(acks), invoker.WithUserMemory("lots"))
	require.ErrorIs(t, err, store.ErrInvalid, "a user memory no controller can read is refused at construction")
}
