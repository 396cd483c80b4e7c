package kafkastore_test

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/go-whisk/activationstore/internal/activationtest"
	"github.com/go-whisk/activationstore/internal/kafkatest"
	"github.com/go-whisk/activationstore/kafkastore"
	"github.com/go-whisk/activationstore/primary/memory"
	"github.com/go-whisk/activationstore/store"
)

// brokerDown makes kfake's node close every connection on which it gets a
// produce request, as a broker that died does, until the returned func is
// called.
func brokerDown(c *kfake.Cluster, node int32) (up func()) {
	var down atomic.Bool
	down.Store(true)
	c.ControlKey(int16(kmsg.Produce), func(kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		if down.Load() && c.CurrentNode() == node {
			return nil, errors.New("broker down"), true
		}
		return nil, nil, false
	})
	return func() { down.Store(false) }
}

// elect moves every partition of topic that node leads to another node,
// as the controller does once it notices the node is gone.
func elect(t *testing.T, c *kfake.Cluster, topic string, partitions int, node int32, nodes int) {
	t.Helper()
	for p := range int32(partitions) {
		if c.LeaderFor(topic, p) == node {
			require.NoError(t, c.MoveTopicPartition(topic, p, (node+1)%int32(nodes)))
		}
	}
}

// With default options, a partition leader whose connections break costs
// no Store an error: batches for its partitions go to partitions led by
// the other brokers at once, and once its partitions have new leaders,
// every partition takes records again.
func TestStoreReroutesAroundDeadLeader(t *testing.T) {
	const nodes, partitions, callers, each = 3, 6, 8, 60
	b := kafkatest.StartFake(t, kfake.NumBrokers(nodes), kfake.Ports(0, 0, 0))
	c := b.Cluster()
	var logs logBuffer
	s, topic := newStore(t, b, memory.New(), kafkastore.WithTopicPartitions(partitions), kafkastore.WithLogger(logs.logger()))
	// kfake puts a new topic on one node: spread it as Kafka would.
	for p := range int32(partitions) {
		require.NoError(t, c.MoveTopicPartition(topic, p, p%nodes))
	}
	time.Sleep(1500 * time.Millisecond) // the Store's metadata shows it (1 s refresh)
	_, err := s.Store(ctxT(t), activationtest.New("guest"), store.UserContext{})
	require.NoError(t, err)

	victim := c.LeaderFor(topic, 0)
	up := brokerDown(c, victim)
	defer up()
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		errs    []error
		longest time.Duration
		stored  atomic.Int64
	)
	for range callers {
		wg.Go(func() {
			for range each {
				start := time.Now()
				_, err := s.Store(context.Background(), activationtest.New("guest"), store.UserContext{})
				d := time.Since(start)
				mu.Lock()
				if err != nil {
					errs = append(errs, err)
				}
				longest = max(longest, d)
				mu.Unlock()
				stored.Add(1)
				time.Sleep(5 * time.Millisecond)
			}
		})
	}
	// The election, once half the records are in.
	deadline := time.Now().Add(20 * time.Second)
	for stored.Load() < callers*each/2 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	elect(t, c, topic, partitions, victim, nodes)
	wg.Wait()

	assert.Empty(t, errs, "Store errors")
	assert.Less(t, longest, time.Second, "longest Store call")
	st := s.Stats()
	assert.Positive(t, st.PublishRetries, "batches sent to the down broker were sent again")
	assert.Zero(t, st.PublishFailures)
	assert.Equal(t, uint64(callers*each+1), st.Published)
	assert.GreaterOrEqual(t, total(t, b, topic), int64(callers*each+1), "every record is in the topic (some maybe twice)")
	assert.NotEmpty(t, logs.entries(t, slog.LevelWarn, "broker unreachable"), "the failed broker is logged")

	// After the election, once the metadata shows it (the transport
	// refreshes every second), every partition takes records again.
	before := endOffsets(t, b, topic)
	var after map[int]int64
	for deadline := time.Now().Add(5 * time.Second); ; {
		for range partitions {
			_, err := s.Store(ctxT(t), activationtest.New("guest"), store.UserContext{})
			require.NoError(t, err)
		}
		after = endOffsets(t, b, topic)
		all := true
		for p := range partitions {
			all = all && after[p] > before[p]
		}
		if all || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	for p := range partitions {
		assert.Greater(t, after[p], before[p], "partition %d gets records within 5 s of its new leader's election (end offsets %v, then %v; leaders %d %d %d %d %d %d)", p, before, after,
			c.LeaderFor(topic, 0), c.LeaderFor(topic, 1), c.LeaderFor(topic, 2), c.LeaderFor(topic, 3), c.LeaderFor(topic, 4), c.LeaderFor(topic, 5))
	}
	if t.Failed() {
		t.Logf("Store log:\n%s", logs.String())
	}
	t.Logf("SUMMARY %s: %d Stores, errors %d, longest %v, records sent again %d", t.Name(), callers*each, len(errs), longest.Round(time.Millisecond), st.PublishRetries)
}

// On a single-partition topic a Store waits through the election of a new
// leader, with the default publish timeout, instead of failing; the
// caller's context still bounds it.
func TestStoreWaitsForElectionOnSinglePartition(t *testing.T) {
	const nodes = 3
	b := kafkatest.StartFake(t, kfake.NumBrokers(nodes), kfake.Ports(0, 0, 0))
	c := b.Cluster()
	s, topic := newStore(t, b, memory.New(), kafkastore.WithTopicPartitions(1))
	_, err := s.Store(ctxT(t), activationtest.New("guest"), store.UserContext{})
	require.NoError(t, err)

	victim := c.LeaderFor(topic, 0)
	up := brokerDown(c, victim)
	defer up()

	// The caller's deadline comes first: it wins.
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	start := time.Now()
	_, err = s.Store(ctx, activationtest.New("guest"), store.UserContext{})
	cancel()
	require.ErrorIs(t, err, kafkastore.ErrPublish)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	assert.Less(t, time.Since(start), time.Second, "bounded by the caller's context")

	const electionAfter = 1500 * time.Millisecond
	timer := time.AfterFunc(electionAfter, func() { elect(t, c, topic, 1, victim, nodes) })
	defer timer.Stop()
	start = time.Now()
	_, err = s.Store(context.Background(), activationtest.New("guest"), store.UserContext{})
	elapsed := time.Since(start)
	require.NoError(t, err, "Store waits through the election")
	assert.GreaterOrEqual(t, elapsed, electionAfter-100*time.Millisecond, "it could not be stored before the election")
	assert.Less(t, elapsed, electionAfter+time.Second, "stored soon after the election")
	assert.Positive(t, s.Stats().PublishRetries)
	t.Logf("SUMMARY %s: Store took %v through an election after %v", t.Name(), elapsed.Round(time.Millisecond), electionAfter)
}

func TestDefaultPublishTimeoutIsKafkas(t *testing.T) {
	// Kafka's Java producer: delivery.timeout.ms = 120000.
	assert.Equal(t, 120*time.Second, kafkastore.DefaultPublishTimeout)
}
