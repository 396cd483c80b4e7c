package main_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/go-whisk/activationstore/codec"
	"github.com/go-whisk/activationstore/internal/activationtest"
	"github.com/go-whisk/activationstore/internal/couchtest"
	"github.com/go-whisk/activationstore/internal/kafkatest"
	"github.com/go-whisk/activationstore/internal/servicetest"
	"github.com/go-whisk/activationstore/kafkastore"
)

// endingMetrics are the counters every record read ends in, besides
// abandoned_total (read again by the next owner).
var endingMetrics = []string{"persisted_total", "conflicts_total", "skipped_total", "store_skipped_total", "dead_lettered_total"}

// TestServiceMetricsAccountForEveryRecord: through a rebalance (a second
// instance joins) and a restart (the first is stopped and another
// started), the instances' /metrics add up: each instance's read_total is
// its endings plus abandoned_total, and the endings of all instances add
// up to the records published, each counted once, in the right counter.
func TestServiceMetricsAccountForEveryRecord(t *testing.T) {
	broker := kafkatest.Start(t)
	topic := kafkatest.Topic(t, "completed")
	broker.CreateTopic(t, topic, 4, nil)
	couchURL, db := couchtest.URL(t), couchtest.DBName(t)
	bin := servicetest.Build(t, true)
	dlq := kafkatest.Topic(t, "dlq")
	start := func(name string) *servicetest.Service {
		svc := servicetest.Start(t, bin, []string{"PERSISTER_BROKERS=" + broker.Addr(), "COUCHDB_URL=" + couchURL},
			"-db", db, "-listen", "127.0.0.1:0", "-group-id", "acct-"+db, "-client-id", name, "-group-instance-id", name,
			"-session-timeout", "6s", "-heartbeat", "300ms", "-batch-wait", "10ms",
			"-topic-pattern", "^"+topic+"$", "-dead-letter-topic", dlq)
		svc.Eventually(t, 60*time.Second, name+" ready", ready(svc, t))
		return svc
	}
	scrape := func(svc *servicetest.Service) map[string]float64 {
		m, err := svc.Metrics("activation_persister_")
		require.NoError(t, err)
		return m
	}
	endings := func(m map[string]float64) (sum float64) {
		for _, k := range endingMetrics {
			sum += m["activation_persister_"+k]
		}
		return sum
	}

	published, want := 0, map[string]float64{}
	publishMixed := func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		var msgs []kafka.Message
		addMsg := func(kind string, v []byte, h ...kafka.Header) {
			msgs = append(msgs, kafka.Message{Value: v, Headers: h})
			want[kind]++
			published++
		}
		for range 40 {
			v, err := codec.MarshalResultMessage(codec.TransactionID{ID: "sid_test", Start: time.Now()}, activationtest.New("guest"))
			require.NoError(t, err)
			addMsg("persisted_total", v)
		}
		dup, err := codec.MarshalResultMessage(codec.TransactionID{ID: "sid_test", Start: time.Now()}, activationtest.New("guest"))
		require.NoError(t, err)
		addMsg("persisted_total", dup)
		addMsg("conflicts_total", dup)
		for i := range 3 {
			addMsg("dead_lettered_total", fmt.Appendf(nil, "poison %d", i))
		}
		for range 4 {
			a := activationtest.New("guest")
			v, err := codec.Marshal(&codec.CompletionMessage{TransID: codec.TransactionID{ID: "sid_test", Start: a.Start},
				ActivationID: a.ActivationID, Instance: codec.InstanceID{Instance: 0, UserMemory: "1024 MB"}})
			require.NoError(t, err)
			addMsg("skipped_total", v)
		}
		for range 5 {
			v, err := codec.MarshalResultMessage(codec.TransactionID{ID: "sid_test", Start: time.Now()}, activationtest.New("guest"))
			require.NoError(t, err)
			addMsg("store_skipped_total", v, kafka.Header{Key: kafkastore.HeaderStoreSkip, Value: []byte(kafkastore.StoreSkipUser)})
		}
		tr := &kafka.Transport{}
		defer tr.CloseIdleConnections()
		w := &kafka.Writer{Addr: kafka.TCP(broker.Addr()), Topic: topic, Transport: tr, Balancer: &kafka.RoundRobin{},
			BatchTimeout: time.Millisecond, RequiredAcks: kafka.RequireAll}
		defer w.Close()
		require.NoError(t, w.WriteMessages(ctx, msgs...))
	}
	// final holds the last scrape of each stopped instance.
	var final []map[string]float64
	waitAllEnded := func(live ...*servicetest.Service) {
		live[0].Eventually(t, 60*time.Second, fmt.Sprintf("the %d records published ended", published), func() bool {
			var sum float64
			for _, m := range final {
				sum += endings(m)
			}
			for _, svc := range live {
				m, err := svc.Metrics("activation_persister_")
				if err != nil {
					return false
				}
				sum += endings(m)
			}
			return sum >= float64(published)
		})
	}

	first := start("acct-a")
	publishMixed()
	second := start("acct-b") // a rebalance
	publishMixed()
	waitAllEnded(first, second)
	final = append(final, scrape(first))
	require.NoError(t, first.Terminate(t, 30*time.Second)) // a restart
	third := start("acct-a")                               // the same instance: a static member back
	publishMixed()
	waitAllEnded(second, third)
	for _, svc := range []*servicetest.Service{second, third} {
		final = append(final, scrape(svc))
		require.NoError(t, svc.Terminate(t, 30*time.Second))
	}

	total := map[string]float64{}
	for i, m := range final {
		read, abandoned := m["activation_persister_read_total"], m["activation_persister_abandoned_total"]
		assert.Equal(t, read, endings(m)+abandoned, "instance %d: read_total = the endings + abandoned_total (%v)", i, m)
		for _, k := range append(endingMetrics, "read_total", "abandoned_total", "redelivered_total") {
			total[k] += m["activation_persister_"+k]
		}
	}
	t.Logf("published %d; the instances' /metrics add up to %v", published, total)
	var sum float64
	for _, k := range endingMetrics {
		assert.Equal(t, want[k], total[k], "activation_persister_%s over the instances", k)
		sum += total[k]
	}
	assert.Equal(t, float64(published), sum, "the endings add up to the records published")
}
