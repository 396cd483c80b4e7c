package persister

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-whisk/activationstore/kafkastore/internal/kafkaconn"
	"github.com/segmentio/kafka-go"
)

// ErrGroupInstanceFenced is returned by Run when another live persister
// joined the consumer group with the same group instance id
// (WithGroupInstanceID): the coordinator fenced this one. Two processes
// must never share an instance id; give each its own (its pod name).
var ErrGroupInstanceFenced = errors.New("persister: another persister joined the consumer group with the same group instance id, which fenced this one; give every persister its own id (WithGroupInstanceID, e.g. its pod name)")

// groupProtocol is the partition assignment the persister offers: every
// partition of every topic dealt round-robin over the members sorted by
// instance id (member id for dynamic members), so that single-partition
// topics (completed<N>) spread, and a static member that restarts gets
// the same partitions. Earlier persisters (kafka-go's ConsumerGroup)
// offered it too.
const groupProtocol = "roundrobin"

// groupMember is the persister's membership of its consumer group, driven
// on kafka.Client rather than kafka-go's ConsumerGroup, which can neither
// send a group instance id (static membership, KIP-345, JoinGroup v5+)
// nor be cancelled while it joins.
//
// With an instance id, a persister that restarts within the session
// timeout takes its place again without a rebalance, and does not leave
// the group when Run returns: a crash-looping member does not stop the
// others. Without one, it joins as a new member every Run and leaves when
// Run returns.
type groupMember struct {
	p        *Persister
	client   *kafka.Client
	instance string // group.instance.id; "" dynamic

	mu       sync.Mutex
	memberID string
	coord    net.Addr // the group coordinator; nil: look it up
}

func newGroupMember(p *Persister) *groupMember {
	return &groupMember{
		p:        p,
		instance: p.cfg.groupInstanceID,
		client:   &kafka.Client{Addr: p.cfg.conn.Addr(), Transport: p.transport},
	}
}

func (m *groupMember) member() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.memberID
}

func (m *groupMember) setMember(id string) {
	m.mu.Lock()
	m.memberID = id
	m.mu.Unlock()
}

// coordinator returns the group coordinator's address, looking it up when
// unknown.
func (m *groupMember) coordinator(ctx context.Context) (net.Addr, error) {
	m.mu.Lock()
	c := m.coord
	m.mu.Unlock()
	if c != nil {
		return c, nil
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	res, err := m.client.FindCoordinator(ctx, &kafka.FindCoordinatorRequest{Key: m.p.cfg.groupID, KeyType: kafka.CoordinatorKeyTypeConsumer})
	if err == nil {
		err = res.Error
	}
	if err != nil {
		return nil, fmt.Errorf("find the coordinator of group %s: %w", m.p.cfg.groupID, err)
	}
	if res.Coordinator == nil {
		return nil, fmt.Errorf("find the coordinator of group %s: no coordinator in the reply", m.p.cfg.groupID)
	}
	c = kafka.TCP(net.JoinHostPort(res.Coordinator.Host, strconv.Itoa(res.Coordinator.Port)))
	m.mu.Lock()
	m.coord = c
	m.mu.Unlock()
	return c, nil
}

// forgetCoordinator makes the next request look the coordinator up again,
// after an error that says it moved or may have.
func (m *groupMember) forgetCoordinator(err error) {
	if errors.Is(err, kafka.NotCoordinatorForGroup) || errors.Is(err, kafka.GroupCoordinatorNotAvailable) ||
		!isKafkaError(err) {
		m.mu.Lock()
		m.coord = nil
		m.mu.Unlock()
	}
}

func isKafkaError(err error) bool {
	var ke kafka.Error
	return errors.As(err, &ke)
}

// generation is one group generation this member is part of.
type generation struct {
	id       int
	memberID string
	// assigned: topic → partition → where to start (committed offset, or
	// kafka.FirstOffset) and what the previous owner left in doubt.
	assigned map[string]map[int]partitionStart

	ctx    context.Context // ends with the generation
	end    context.CancelFunc
	done   chan struct{} // the heartbeat loop returned
	fenced atomic.Bool
}

// partitionStart is what the group knows of a partition when it is assigned.
type partitionStart struct {
	offset  int64
	inDoubt []int64 // offsets whose write the previous owner abandoned mid-flight
}

// join joins the group and returns the generation, its partitions
// assigned and their offsets fetched, with its heartbeat running. It
// retries until it succeeds or ctx ends (then it returns ctx's error), and
// fails at once only when this member was fenced (ErrGroupInstanceFenced).
func (m *groupMember) join(ctx context.Context, topics persistedTopics) (*generation, error) {
	p := m.p
	for attempt := 1; ; {
		gen, err := m.joinOnce(ctx, topics)
		switch {
		case err == nil:
			return gen, nil
		case ctx.Err() != nil:
			return nil, ctx.Err()
		case errors.Is(err, kafka.FencedInstanceID):
			return nil, ErrGroupInstanceFenced
		case errors.Is(err, kafka.MemberIDRequired), errors.Is(err, kafka.RebalanceInProgress):
			continue // at once: the coordinator told us what to do
		case errors.Is(err, kafka.UnknownMemberId), errors.Is(err, kafka.IllegalGeneration):
			m.setMember("")
			continue
		}
		m.forgetCoordinator(err)
		p.log.Warn("persister cannot join its consumer group; retrying", "attempt", attempt, "err", err)
		if !kafkaconn.Sleep(ctx, min(p.retry.Wait(attempt), p.cfg.sessionTimeout/2)) {
			return nil, ctx.Err()
		}
		attempt++
	}
}

func (m *groupMember) joinOnce(ctx context.Context, topics persistedTopics) (*generation, error) {
	p := m.p
	coord, err := m.coordinator(ctx)
	if err != nil {
		return nil, err
	}
	// JoinGroup waits for the other members, up to the rebalance timeout.
	jctx, cancel := context.WithTimeout(ctx, p.cfg.rebalanceTimeout+10*time.Second)
	defer cancel()
	jr, err := m.client.JoinGroup(jctx, &kafka.JoinGroupRequest{
		Addr:             coord,
		GroupID:          p.cfg.groupID,
		SessionTimeout:   p.cfg.sessionTimeout,
		RebalanceTimeout: p.cfg.rebalanceTimeout,
		MemberID:         m.member(),
		GroupInstanceID:  m.instance,
		ProtocolType:     "consumer",
		Protocols:        []kafka.GroupProtocol{{Name: groupProtocol, Metadata: kafka.GroupProtocolSubscription{Topics: topics.names()}}},
	})
	if err != nil {
		return nil, fmt.Errorf("join group %s: %w", p.cfg.groupID, err)
	}
	if jr.Error != nil {
		if errors.Is(jr.Error, kafka.MemberIDRequired) {
			m.setMember(jr.MemberID) // KIP-394: join again with this id
		}
		return nil, fmt.Errorf("join group %s: %w", p.cfg.groupID, jr.Error)
	}
	m.setMember(jr.MemberID)

	// The leader assigns. A static leader that rejoins a stable group gets
	// no members: the group keeps its assignment, which SyncGroup returns.
	var assignments []kafka.SyncGroupRequestAssignment
	if jr.LeaderID == jr.MemberID && len(jr.Members) > 0 {
		assignments = assignRoundRobin(jr.Members, topics)
	}
	sctx, cancel2 := context.WithTimeout(ctx, p.cfg.rebalanceTimeout+10*time.Second)
	defer cancel2()
	sr, err := m.client.SyncGroup(sctx, &kafka.SyncGroupRequest{
		Addr:            coord,
		GroupID:         p.cfg.groupID,
		GenerationID:    jr.GenerationID,
		MemberID:        jr.MemberID,
		GroupInstanceID: m.instance,
		ProtocolType:    "consumer",
		ProtocolName:    jr.ProtocolName,
		Assignments:     assignments,
	})
	if err == nil {
		err = sr.Error
	}
	if err != nil {
		return nil, fmt.Errorf("sync group %s, generation %d: %w", p.cfg.groupID, jr.GenerationID, err)
	}

	gen := &generation{id: jr.GenerationID, memberID: jr.MemberID, assigned: map[string]map[int]partitionStart{}, done: make(chan struct{})}
	gen.ctx, gen.end = context.WithCancel(ctx)
	go func() {
		defer close(gen.done)
		m.heartbeat(gen)
	}()
	if err := m.fetchOffsets(ctx, gen, sr.Assignment.AssignedPartitions); err != nil {
		gen.end()
		<-gen.done
		return nil, err
	}
	return gen, nil
}

// assignRoundRobin deals every partition of the members' topics over the
// members, sorted by instance id (else member id). Topics the leader does
// not know the partitions of are left out; the member that follows them
// triggers a rebalance once the leader sees them too.
func assignRoundRobin(members []kafka.JoinGroupResponseMember, known persistedTopics) []kafka.SyncGroupRequestAssignment {
	ms := slices.Clone(members)
	slices.SortFunc(ms, func(a, b kafka.JoinGroupResponseMember) int {
		return cmp.Or(cmp.Compare(a.GroupInstanceID, b.GroupInstanceID), cmp.Compare(a.ID, b.ID))
	})
	out := make([]kafka.SyncGroupRequestAssignment, len(ms))
	wants := map[string][]int{} // topic → indexes of the members following it
	for i, mb := range ms {
		out[i] = kafka.SyncGroupRequestAssignment{MemberID: mb.ID, Assignment: kafka.GroupProtocolAssignment{AssignedPartitions: map[string][]int{}}}
		for _, t := range mb.Metadata.Topics {
			wants[t] = append(wants[t], i)
		}
	}
	next := 0 // carries over from topic to topic
	for _, t := range slices.Sorted(maps.Keys(wants)) {
		for part := range known[t] {
			idx := wants[t][next%len(wants[t])]
			next++
			a := out[idx].Assignment.AssignedPartitions
			a[t] = append(a[t], part)
		}
	}
	return out
}

// fetchOffsets sets where each assigned partition starts.
func (m *groupMember) fetchOffsets(ctx context.Context, gen *generation, assigned map[string][]int) error {
	if len(assigned) == 0 {
		return nil
	}
	coord, err := m.coordinator(ctx)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	res, err := m.client.OffsetFetch(ctx, &kafka.OffsetFetchRequest{Addr: coord, GroupID: m.p.cfg.groupID, Topics: assigned})
	if err == nil {
		err = res.Error
	}
	if err != nil {
		return fmt.Errorf("fetch the committed offsets of group %s: %w", m.p.cfg.groupID, err)
	}
	for topic, parts := range assigned {
		gen.assigned[topic] = map[int]partitionStart{}
		got := map[int]kafka.OffsetFetchPartition{}
		for _, op := range res.Topics[topic] {
			got[op.Partition] = op
		}
		for _, part := range parts {
			op, ok := got[part]
			if ok && op.Error != nil {
				return fmt.Errorf("fetch the committed offset of %s/%d for group %s: %w", topic, part, m.p.cfg.groupID, op.Error)
			}
			start := partitionStart{offset: kafka.FirstOffset}
			if ok && op.CommittedOffset >= 0 {
				start.offset = op.CommittedOffset
				start.inDoubt = parseInDoubt(op.Metadata, op.CommittedOffset)
			}
			gen.assigned[topic][part] = start
		}
	}
	return nil
}

// heartbeat keeps gen alive, and ends it when the group rebalances, when
// the coordinator no longer knows this member, or when no heartbeat got
// through for a session timeout.
func (m *groupMember) heartbeat(gen *generation) {
	p := m.p
	t := time.NewTicker(p.cfg.heartbeat)
	defer t.Stop()
	lastOK := time.Now()
	for {
		select {
		case <-gen.ctx.Done():
			return
		case <-t.C:
		}
		err := m.heartbeatOnce(gen)
		switch {
		case err == nil:
			lastOK = time.Now()
			continue
		case gen.ctx.Err() != nil:
			return
		case errors.Is(err, kafka.RebalanceInProgress):
			p.log.Info("persister's consumer group is rebalancing; rejoining", "generation", gen.id)
		case errors.Is(err, kafka.FencedInstanceID):
			gen.fenced.Store(true)
			p.log.Error("persister fenced: another persister joined the group with the same instance id", "generation", gen.id,
				"groupInstanceId", m.instance, "err", err)
		case errors.Is(err, kafka.UnknownMemberId), errors.Is(err, kafka.IllegalGeneration):
			if errors.Is(err, kafka.UnknownMemberId) {
				m.setMember("")
			}
			p.log.Warn("persister's generation is over (its session expired or the group moved on); rejoining",
				"generation", gen.id, "err", err)
		default:
			m.forgetCoordinator(err)
			if time.Since(lastOK) < p.cfg.sessionTimeout {
				p.log.Warn("persister heartbeat failed; retrying", "generation", gen.id, "err", err)
				continue
			}
			p.log.Warn("persister heartbeats failed for a session timeout; rejoining", "generation", gen.id, "err", err)
		}
		gen.end()
		return
	}
}

func (m *groupMember) heartbeatOnce(gen *generation) error {
	ctx, cancel := context.WithTimeout(gen.ctx, max(m.p.cfg.heartbeat, min(m.p.cfg.sessionTimeout/3, 5*time.Second)))
	defer cancel()
	coord, err := m.coordinator(ctx)
	if err != nil {
		return err
	}
	res, err := m.client.Heartbeat(ctx, &kafka.HeartbeatRequest{
		Addr:            coord,
		GroupID:         m.p.cfg.groupID,
		GenerationID:    int32(gen.id),
		MemberID:        gen.memberID,
		GroupInstanceID: m.instance,
	})
	if err != nil {
		return err
	}
	return heartbeatError(res)
}

// heartbeatError is the error of a Heartbeat reply. kafka-go v0.4.51
// declares the reply's fields v1+ in the wrong order (error code, then
// throttle time; Kafka sends the throttle time first), so res.Error holds
// the throttle time's high half, always 0 in practice, and the error code
// lands in the low 16 bits of res.Throttle's milliseconds. Heartbeat
// replies are v1+ from every broker since 0.11.
func heartbeatError(res *kafka.HeartbeatResponse) error {
	if code := int16(uint16(uint32(int32(res.Throttle / time.Millisecond)))); code != 0 {
		return kafka.Error(code)
	}
	return nil
}

// commit commits offsets (topic → partition → offset and metadata) for gen.
func (m *groupMember) commit(ctx context.Context, gen *generation, offsets map[string][]kafka.OffsetCommit) error {
	coord, err := m.coordinator(ctx)
	if err != nil {
		return err
	}
	res, err := m.client.OffsetCommit(ctx, &kafka.OffsetCommitRequest{
		Addr:         coord,
		GroupID:      m.p.cfg.groupID,
		GenerationID: gen.id,
		MemberID:     gen.memberID,
		InstanceID:   m.instance,
		Topics:       offsets,
	})
	if err != nil {
		m.forgetCoordinator(err)
		return err
	}
	var errs []error
	for topic, parts := range res.Topics {
		for _, pr := range parts {
			if pr.Error != nil {
				errs = append(errs, fmt.Errorf("%s/%d: %w", topic, pr.Partition, pr.Error))
			}
		}
	}
	err = errors.Join(errs...)
	if err != nil {
		m.forgetCoordinator(err)
		if errors.Is(err, kafka.FencedInstanceID) {
			gen.fenced.Store(true)
			gen.end()
		}
	}
	return err
}

// leave takes a dynamic member out of the group, so that its partitions
// move at once. A static member stays: if it comes back within the
// session timeout, it takes its partitions again without a rebalance;
// otherwise the coordinator expires it then.
func (m *groupMember) leave(timeout time.Duration) {
	id := m.member()
	if m.instance != "" || id == "" {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	coord, err := m.coordinator(ctx)
	if err != nil {
		return
	}
	// kafka-go misreads the error of LeaveGroup replies v1+: nothing to check.
	_, _ = m.client.LeaveGroup(ctx, &kafka.LeaveGroupRequest{
		Addr:    coord,
		GroupID: m.p.cfg.groupID,
		Members: []kafka.LeaveGroupRequestMember{{ID: id}},
	})
	m.setMember("")
}
