package invoker_test

import (
	"context"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/go-whisk/activationstore/codec"
	"github.com/go-whisk/activationstore/examples/invoker"
	"github.com/go-whisk/activationstore/internal/childproc"
	"github.com/go-whisk/activationstore/internal/kafkatest"
	"github.com/go-whisk/activationstore/kafkastore"
	"github.com/go-whisk/activationstore/primary/memory"
	"github.com/go-whisk/activationstore/store"
)

// newAcks returns the invoker's ack publisher: a kafkastore.Store, whose
// PublishAck writes acks as its Store writes activations.
func newAcks(t *testing.T, broker string, opts ...kafkastore.Option) *kafkastore.Store {
	t.Helper()
	opts = append([]kafkastore.Option{kafkastore.WithBrokers(broker),
		kafkastore.WithTopic(kafkatest.Topic(t, "completed-others"))}, opts...)
	if broker == "127.0.0.1:1" {
		opts = append(opts, kafkastore.WithTopicCreation(false))
	}
	ks, err := kafkastore.New(memory.New(), opts...)
	require.NoError(t, err)
	t.Cleanup(func() { _ = ks.Close() })
	return ks
}

// TestAcksThroughTheSpoolOutliveKafkaOutage: with a spool, an invoker's
// Complete returns while no broker answers (the ack is fdatasynced
// locally), and the acks reach the controller's topic, in order, once
// Kafka is up.
func TestAcksThroughTheSpoolOutliveKafkaOutage(t *testing.T) {
	ports, err := childproc.FreePorts(1)
	require.NoError(t, err)
	addr := "127.0.0.1:" + strconv.Itoa(ports[0]) // nothing listens there yet: Kafka is down
	acks := newAcks(t, addr, kafkastore.WithSpool(t.TempDir()))
	primary := memory.New()
	inv, err := invoker.New(4, invoker.WithActivationStore(primary), invoker.WithAckPublisher(acks))
	require.NoError(t, err)

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	const n = 20
	want := make([]string, n)
	for i := range n {
		a := activation(store.StatusSuccess)
		want[i] = a.ActivationID
		began := time.Now()
		require.NoError(t, inv.Complete(ctx, invoker.Job{Controller: 2, Blocking: i%2 == 0}, a),
			"Complete %d with Kafka down", i)
		assert.Less(t, time.Since(began), 2*time.Second, "Complete %d waited on Kafka", i)
	}
	st := acks.Stats()
	require.EqualValues(t, n, st.Spooled, "every ack is in the spool")
	require.Zero(t, st.Published, "no broker was up to take any")

	b := kafkatest.StartFake(t, kfake.Ports(ports[0]), kfake.SeedTopics(1, invoker.AckTopic(2)),
		kfake.ListenFn(func(network, _ string) (net.Listener, error) { return net.Listen(network, addr) }))
	msgs := readAcks(t, b.Addr(), invoker.AckTopic(2), n)
	for i, m := range msgs {
		var id string
		switch m := m.(type) {
		case *codec.CombinedMessage:
			id = m.Activation().ActivationID
		case *codec.CompletionMessage:
			id = m.ActivationID
		default:
			t.Fatalf("ack %d is a %T", i, m)
		}
		assert.Equal(t, want[i], id, "ack %d out of order", i)
	}
	require.Eventually(t, func() bool { return acks.Stats().Spool.Records == 0 }, 10*time.Second, 10*time.Millisecond,
		"the spool still holds acks Kafka has")
}
