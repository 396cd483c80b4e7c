package persister

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/go-whisk/activationstore/internal/kafkatest"
	"github.com/go-whisk/activationstore/primary/memory"
)

// maxCancelWait is how long Run may take to return once its context ends,
// whatever it was doing.
const maxCancelWait = 2 * time.Second

// rawMember is a consumer group member driven by hand, to hold the group
// in a phase: it joins, and then does only what the test says.
type rawMember struct {
	t      testing.TB
	c      *kafka.Client
	group  string
	topics []string
	id     string
}

// rawMemberClientID names the raw member. kafka-go sends a transport's
// empty ClientID as a null client id in the v2 request header of flexible
// versions (JoinGroup v6+, SyncGroup v4+); Kafka 2.7 then names the member
// "null-<uuid>" and, storing the group at SyncGroup, fails to serialise
// its null client id (SchemaException) and drops the connection: kafka-go
// reports "unexpected EOF". kafkatest's transports name no client.
const rawMemberClientID = "raw-member"

func newRawMember(t testing.TB, b *kafkatest.Broker, group string, topics ...string) *rawMember {
	tr := b.Transport()
	tr.ClientID = rawMemberClientID
	t.Cleanup(tr.CloseIdleConnections)
	return &rawMember{t: t, c: &kafka.Client{Addr: kafka.TCP(b.Addr()), Transport: tr}, group: group, topics: topics}
}

// join sends JoinGroup (twice when the broker asks for a member id) and
// returns the reply; it blocks while the group waits for other members.
func (m *rawMember) join(ctx context.Context) (*kafka.JoinGroupResponse, error) {
	for {
		res, err := m.c.JoinGroup(ctx, &kafka.JoinGroupRequest{
			GroupID: m.group, MemberID: m.id, ProtocolType: "consumer",
			SessionTimeout: 30 * time.Second, RebalanceTimeout: 30 * time.Second,
			Protocols: []kafka.GroupProtocol{{Name: groupProtocol, Metadata: kafka.GroupProtocolSubscription{Topics: m.topics}}},
		})
		if err != nil {
			return nil, err
		}
		if errors.Is(res.Error, kafka.MemberIDRequired) {
			m.id = res.MemberID
			continue
		}
		var ke kafka.Error
		if errors.As(res.Error, &ke) && ke.Temporary() && ctx.Err() == nil { // the coordinator is loading
			time.Sleep(100 * time.Millisecond)
			continue
		}
		if res.Error != nil {
			return nil, res.Error
		}
		m.id = res.MemberID
		return res, nil
	}
}

// joinAlone makes m the group's only member and leader, in a stable
// generation, assigned nothing.
func (m *rawMember) joinAlone() {
	m.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := m.join(ctx)
	if err != nil {
		m.t.Fatalf("raw member: JoinGroup: %v", err)
	}
	sr, err := m.c.SyncGroup(ctx, &kafka.SyncGroupRequest{GroupID: m.group, GenerationID: res.GenerationID, MemberID: m.id,
		ProtocolType: "consumer", ProtocolName: res.ProtocolName,
		Assignments: []kafka.SyncGroupRequestAssignment{{MemberID: m.id, Assignment: kafka.GroupProtocolAssignment{AssignedPartitions: map[string][]int{}}}}})
	if err == nil {
		err = sr.Error
	}
	if err != nil {
		m.t.Fatalf("raw member: SyncGroup: %v (Kafka before 2.8 drops it when a member joined without a client id)", err)
	}
	if ids := m.clientIDs(); len(ids) != 1 || ids[0] != rawMemberClientID {
		m.t.Fatalf("raw member: the group's members have client ids %q, want only %q", ids, rawMemberClientID)
	}
}

// clientIDs are the client ids of the group's members per its coordinator.
func (m *rawMember) clientIDs() []string {
	return groupClientIDs(m.t, m.c, m.group)
}

// groupClientIDs are the client ids of group's members per its
// coordinator, sorted.
func groupClientIDs(t testing.TB, c *kafka.Client, group string) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := c.DescribeGroups(ctx, &kafka.DescribeGroupsRequest{GroupIDs: []string{group}})
	if err == nil && len(res.Groups) != 1 {
		err = fmt.Errorf("%d groups in the reply, want 1", len(res.Groups))
	}
	if err == nil {
		err = res.Groups[0].Error
	}
	if err != nil {
		t.Fatalf("DescribeGroups %s: %v", group, err)
	}
	var ids []string
	for _, mb := range res.Groups[0].Members {
		ids = append(ids, mb.ClientID)
	}
	slices.Sort(ids)
	return ids
}

// state is the group's state per its coordinator.
func (m *rawMember) state() string {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := m.c.DescribeGroups(ctx, &kafka.DescribeGroupsRequest{GroupIDs: []string{m.group}})
	if err != nil || len(res.Groups) != 1 {
		m.t.Fatalf("DescribeGroups: %v", err)
	}
	return res.Groups[0].GroupState
}

// startRun runs p and returns its cancel and a func that waits for Run
// and returns how long it took after the cancel.
func startRun(t *testing.T, p *Persister) (cancelAndWait func() time.Duration) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	t.Cleanup(cancel)
	return func() time.Duration {
		start := time.Now()
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run returned %v after cancel, want nil", err)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("Run did not return within 30 s of cancel")
		}
		return time.Since(start)
	}
}

func checkCancelWait(t *testing.T, phase string, d time.Duration) {
	t.Helper()
	t.Logf("cancelled during %s: Run returned in %v", phase, d.Round(time.Millisecond))
	if d > maxCancelWait {
		t.Errorf("cancelled during %s, Run returned after %v; want at most %v", phase, d, maxCancelWait)
	}
}

// Run returns within 2 s of its context's end in every phase: while it
// waits in JoinGroup for a member that does not rejoin, while it waits in
// SyncGroup for a leader that does not assign, while it fetches, and
// while it retries a failing write; and it commits what it persisted. CI
// runs it on Apache Kafka (KAFKATEST=apache) as well as on kfake.
func TestPersisterCancelledInEveryPhaseReturnsWithin2s(t *testing.T) {
	b := kafkatest.Start(t)
	// Long group timeouts, as in production: only cancellation may end
	// the waits.
	slowGroup := WithGroupTimeouts(30*time.Second, 30*time.Second, 500*time.Millisecond)

	t.Run("join", func(t *testing.T) {
		topic := kafkatest.Topic(t, "completed")
		b.CreateTopic(t, topic, 2, nil)
		group := kafkatest.Topic(t, "group")
		x := newRawMember(t, b, group, topic)
		x.joinAlone()
		p := newTestPersister(t, b, memory.New(), WithTopicPattern(exactTopics(topic)), WithGroupID(group), slowGroup)
		stop := startRun(t, p)
		// The persister's JoinGroup puts the group in PreparingRebalance,
		// where it stays: x does not rejoin.
		waitUntil(t, 30*time.Second, "the group rebalancing", func() bool { return x.state() == "PreparingRebalance" })
		time.Sleep(300 * time.Millisecond)
		checkCancelWait(t, "JoinGroup", stop())
	})

	t.Run("sync", func(t *testing.T) {
		topic := kafkatest.Topic(t, "completed")
		b.CreateTopic(t, topic, 2, nil)
		group := kafkatest.Topic(t, "group")
		x := newRawMember(t, b, group, topic)
		x.joinAlone()
		p := newTestPersister(t, b, memory.New(), WithTopicPattern(exactTopics(topic)), WithGroupID(group), slowGroup)
		stop := startRun(t, p)
		waitUntil(t, 30*time.Second, "the group rebalancing", func() bool { return x.state() == "PreparingRebalance" })
		// x rejoins, stays leader, and never sends SyncGroup: the
		// persister waits in SyncGroup.
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		res, err := x.join(ctx)
		if err != nil {
			t.Fatalf("raw member rejoin: %v", err)
		}
		if res.LeaderID != x.id {
			t.Fatalf("the raw member is not the leader of the new generation (leader %s); the test needs it to be", res.LeaderID)
		}
		waitUntil(t, 10*time.Second, "the group awaiting the leader's assignment", func() bool { return x.state() == "CompletingRebalance" })
		time.Sleep(300 * time.Millisecond)
		checkCancelWait(t, "SyncGroup", stop())
	})

	t.Run("fetch", func(t *testing.T) {
		topic := kafkatest.Topic(t, "completed")
		b.CreateTopic(t, topic, 2, nil)
		group := kafkatest.Topic(t, "group")
		mem := memory.New()
		p := newTestPersister(t, b, mem, WithTopicPattern(exactTopics(topic)), WithGroupID(group), slowGroup,
			WithCommitInterval(time.Hour)) // only the final commit
		stop := startRun(t, p)
		as := produceActivations(t, b, topic, "guest", 20)
		waitUntil(t, 30*time.Second, "the records stored", func() bool { return mem.Len() == len(as) })
		time.Sleep(300 * time.Millisecond) // fetching, nothing to read
		checkCancelWait(t, "a fetch", stop())
		waitCommittedToEnd(t, b, group, topic, 2)
		checkStatsAddUp(t, "persister", p.Stats())
	})

	t.Run("write-retry", func(t *testing.T) {
		topic := kafkatest.Topic(t, "completed")
		b.CreateTopic(t, topic, 1, nil)
		group := kafkatest.Topic(t, "group")
		mem := memory.New()
		primary := &faultyBatchPrimary{faultyPrimary: &faultyPrimary{innerStore: mem}, batch: mem}
		p := newTestPersister(t, b, primary, WithTopicPattern(exactTopics(topic)), WithGroupID(group), slowGroup,
			WithRetryBackoff(100*time.Millisecond, time.Second), WithDrainTimeout(10*time.Second))
		stop := startRun(t, p)
		ok := produceActivations(t, b, topic, "guest", 10)
		waitUntil(t, 30*time.Second, "the first records stored", func() bool { return mem.Len() == len(ok) })
		primary.failing.Store(true)
		produceActivations(t, b, topic, "guest", 10)
		waitUntil(t, 30*time.Second, "writes retried", func() bool { return p.Stats().Retries >= 3 })
		checkCancelWait(t, "a write being retried", stop())
		got := committedOffsets(t, b, group, topic, 1)
		if got[0] != int64(len(ok)) {
			t.Errorf("committed offset %d, want %d: every persisted record and none of the failing ones", got[0], len(ok))
		}
		st := p.Stats()
		checkStatsAddUp(t, "persister", st)
		if st.Abandoned != 10 {
			t.Errorf("abandoned %d records, want the 10 failing ones", st.Abandoned)
		}
	})
}
