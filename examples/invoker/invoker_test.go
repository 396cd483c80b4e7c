package invoker_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/go-whisk/activationstore/codec"
	"github.com/go-whisk/activationstore/examples/invoker"
	"github.com/go-whisk/activationstore/internal/kafkatest"
	"github.com/go-whisk/activationstore/primary/memory"
	"github.com/go-whisk/activationstore/store"
)

var seq atomic.Int64

// TestMain stops the shared Apache Kafka broker (KAFKATEST=apache) with the
// test binary.
func TestMain(m *testing.M) { kafkatest.Main(m) }

func activation(status int) *store.Activation {
	start := time.UnixMilli(1_700_000_000_000 + seq.Add(1))
	return &store.Activation{
		Namespace: "guest", Name: "hello", Subject: "guest-subject",
		ActivationID: fmt.Sprintf("%032x", seq.Add(1)),
		Start:        start, End: start.Add(3 * time.Millisecond),
		Response: store.Response{StatusCode: status, Result: json.RawMessage(`{"payload":"hi"}`)},
		Logs:     []string{"stdout: hi"}, Version: store.DefaultVersion,
	}
}

// readAcks reads n records from topic and decodes them.
func readAcks(t *testing.T, broker string, topic string, n int) []codec.Message {
	t.Helper()
	out := make([]codec.Message, 0, n)
	for _, m := range readRecords(t, broker, topic, n) {
		msg, err := codec.Decode(m.Value)
		require.NoError(t, err, "decoding ack %s", m.Value)
		out = append(out, msg)
	}
	return out
}

// readRecords reads n records from topic, headers included.
func readRecords(t *testing.T, broker string, topic string, n int) []kafka.Message {
	t.Helper()
	r := kafka.NewReader(kafka.ReaderConfig{Brokers: []string{broker}, Topic: topic, MaxWait: 50 * time.Millisecond})
	defer r.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out := make([]kafka.Message, 0, n)
	for len(out) < n {
		m, err := r.ReadMessage(ctx)
		require.NoError(t, err, "reading ack %d of %d from %s", len(out)+1, n, topic)
		out = append(out, m)
	}
	return out
}

func TestBlockingAckedNonBlockingStored(t *testing.T) {
	b := kafkatest.Start(t)
	b.CreateTopic(t, invoker.AckTopic(3), 1, nil)
	acks := newAcks(t, b.Addr())
	primary := memory.New()
	inv, err := invoker.New(7, invoker.WithActivationStore(primary), invoker.WithAckPublisher(acks))
	require.NoError(t, err)

	ctx := context.Background()
	blocking, nonBlocking := activation(store.StatusSuccess), activation(store.StatusSuccess)
	require.NoError(t, inv.Complete(ctx, invoker.Job{Controller: 3, Blocking: true}, blocking))
	require.NoError(t, inv.Complete(ctx, invoker.Job{Controller: 3}, nonBlocking))

	msgs := readAcks(t, b.Addr(), invoker.AckTopic(3), 2)
	combined, ok := msgs[0].(*codec.CombinedMessage)
	require.True(t, ok, "a blocking activation is acked with a combined message, got %T", msgs[0])
	assert.Equal(t, blocking.ActivationID, combined.Activation().ActivationID)
	assert.Equal(t, 7, combined.Instance.Instance)
	completion, ok := msgs[1].(*codec.CompletionMessage)
	require.True(t, ok, "a non-blocking activation is acked with a completion, got %T", msgs[1])
	assert.Equal(t, nonBlocking.ActivationID, completion.ActivationID)
	assert.Nil(t, completion.Activation())

	_, err = primary.Get(ctx, "guest", nonBlocking.ActivationID, store.UserContext{})
	assert.NoError(t, err, "the non-blocking activation is stored through the activation store")
	_, err = primary.Get(ctx, "guest", blocking.ActivationID, store.UserContext{})
	assert.ErrorIs(t, err, store.ErrNotFound, "the blocking one travels in its ack; the persister stores it")
}

func TestStoreLevelsApplyToNonBlocking(t *testing.T) {
	b := kafkatest.Start(t)
	b.CreateTopic(t, invoker.AckTopic(0), 1, nil)
	acks := newAcks(t, b.Addr())
	primary := memory.New()
	inv, err := invoker.New(0, invoker.WithActivationStore(primary), invoker.WithAckPublisher(acks),
		invoker.WithStoreLevels(store.Levels{NonBlocking: store.StoreFailures}))
	require.NoError(t, err)
	ctx := context.Background()
	ok, failed := activation(store.StatusSuccess), activation(store.StatusDeveloperError)
	require.NoError(t, inv.Complete(ctx, invoker.Job{}, ok))
	require.NoError(t, inv.Complete(ctx, invoker.Job{}, failed))
	assert.Equal(t, 1, primary.Len(), "STORE_FAILURES keeps only the failed activation")
	_, err = primary.Get(ctx, "guest", failed.ActivationID, store.UserContext{})
	assert.NoError(t, err)
	readAcks(t, b.Addr(), invoker.AckTopic(0), 2) // both are acked all the same
}

func TestInvalidActivationNeitherAckedNorStored(t *testing.T) {
	b := kafkatest.Start(t)
	acks := newAcks(t, b.Addr())
	primary := memory.New()
	inv, err := invoker.New(0, invoker.WithActivationStore(primary), invoker.WithAckPublisher(acks))
	require.NoError(t, err)
	bad := activation(store.StatusSuccess)
	bad.Namespace = "_design/x"
	err = inv.Complete(context.Background(), invoker.Job{}, bad)
	require.ErrorIs(t, err, store.ErrInvalid)
	assert.Equal(t, 0, primary.Len())
}

func TestNewRequiresStoreAndAcks(t *testing.T) {
	_, err := invoker.New(0, invoker.WithAckPublisher(newAcks(t, "127.0.0.1:1")))
	require.ErrorContains(t, err, "WithActivationStore")
	_, err = invoker.New(0, invoker.WithActivationStore(memory.New()))
	require.ErrorContains(t, err, "WithAckPublisher")
}
