package kafkastore

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/segmentio/kafka-go"
	metadataapi "github.com/segmentio/kafka-go/protocol/metadata"

	"github.com/go-whisk/activationstore/kafkastore/internal/kafkaconn"
)

// partitionRouter steers batches away from partitions whose leader failed.
//
// After a broker dies its partitions keep it as their leader in the
// cluster metadata until the controller notices (KRaft's broker session,
// 9 s by default; ZooKeeper's session, 18 s), and its address refuses at
// once. Records are not key-ordered, so a batch refused there is resent at
// once to a partition whose leader is another broker. The router remembers
// the failed broker, with the partitions it led, until the metadata shows
// them led by another broker, and asks kafka-go's transport to refresh its
// metadata on every failure instead of waiting for its timer.
//
// When nothing failed, pick costs one atomic load: the batcher's rotation
// decides alone.
type partitionRouter struct {
	transport *kafka.Transport
	addr      net.Addr
	topic     string
	log       *slog.Logger

	degraded atomic.Bool // something is avoided: consult the metadata

	mu      sync.Mutex
	brokers map[int32]*brokerFailure // failed brokers, by node id

	refreshMu  sync.Mutex
	refreshing chan struct{} // closed when the refresh in progress ends; nil when none
}

// brokerFailure is a broker the router avoids: led holds the partitions it
// led when it failed.
type brokerFailure struct {
	led   []int
	until time.Time
}

// avoidFor bounds how long a failure is remembered when the metadata never
// shows a new leader (a broker back before the controller noticed it was
// gone, or a failure blamed on a partition's new leader because the
// metadata changed while the batch was on its way): one more attempt then
// tells whether it answers, and a broker still down refuses at once.
const avoidFor = 10 * time.Second

// refreshTopic is the name the forced metadata refresh asks for besides
// the topic: no broker creates or knows it (a space is not allowed in a
// topic name), which is what makes kafka-go's transport query the cluster
// and then refresh its cache rather than answer from it.
const refreshTopic = "kafkastore metadata refresh"

func newPartitionRouter(transport *kafka.Transport, addr net.Addr, topic string, log *slog.Logger) *partitionRouter {
	return &partitionRouter{
		transport: transport,
		addr:      addr,
		topic:     topic,
		log:       log,
		brokers:   map[int32]*brokerFailure{},
	}
}

// topicLayout is the part of the transport's cached metadata the router
// needs.
type topicLayout struct {
	leaders []int32 // by partition; -1 when there is none
	live    map[int32]bool
	addrs   map[string]int32 // broker ids by host:port
}

// layout reads the transport's cached metadata of the topic; it does not
// go to the brokers.
func (r *partitionRouter) layout(ctx context.Context) (topicLayout, bool) {
	res, err := r.transport.RoundTrip(ctx, r.addr, &metadataapi.Request{TopicNames: []string{r.topic}})
	if err != nil {
		return topicLayout{}, false
	}
	m := res.(*metadataapi.Response)
	var l topicLayout
	for _, t := range m.Topics {
		if t.Name != r.topic || t.ErrorCode != 0 || len(t.Partitions) == 0 {
			continue
		}
		l.leaders = make([]int32, len(t.Partitions))
		for i := range l.leaders {
			l.leaders[i] = -1
		}
		for _, p := range t.Partitions {
			if int(p.PartitionIndex) < len(l.leaders) {
				l.leaders[p.PartitionIndex] = p.LeaderID
			}
		}
	}
	if l.leaders == nil {
		return topicLayout{}, false
	}
	l.live = make(map[int32]bool, len(m.Brokers))
	l.addrs = make(map[string]int32, len(m.Brokers))
	for _, b := range m.Brokers {
		l.live[b.NodeID] = true
		l.addrs[net.JoinHostPort(b.Host, strconv.Itoa(int(b.Port)))] = b.NodeID
	}
	return l, true
}

// pick returns the Message.Partition value of batch seq: seq itself (the
// balancer takes it modulo the partition count) unless partitions are
// avoided, then a partition whose leader is not known to have failed.
// healthy is false when every partition is avoided: the caller then sends
// anyway, after a pause, as the only way to learn of a recovery sooner
// than the metadata.
func (r *partitionRouter) pick(ctx context.Context, seq int) (partition int, healthy bool) {
	if !r.degraded.Load() {
		return seq, true
	}
	l, ok := r.layout(ctx)
	if !ok {
		return seq, true
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.forget(l)
	var good []int
	for p, leader := range l.leaders {
		if r.usable(l, p, leader) {
			good = append(good, p)
		}
	}
	if len(good) == 0 {
		return seq % len(l.leaders), false
	}
	return good[seq%len(good)], true
}

// usable reports whether partition p, led by leader, may take a batch;
// r.mu must be held.
func (r *partitionRouter) usable(l topicLayout, p int, leader int32) bool {
	if leader < 0 || !l.live[leader] {
		return false
	}
	_, failed := r.brokers[leader]
	return !failed
}

// forget drops the failures that the metadata shows resolved, or that are
// too old; r.mu must be held.
func (r *partitionRouter) forget(l topicLayout) {
	now := time.Now()
	for id, f := range r.brokers {
		moved := len(f.led) > 0
		for _, p := range f.led {
			if p < len(l.leaders) && l.leaders[p] == id {
				moved = false
				break
			}
		}
		if moved || now.After(f.until) {
			delete(r.brokers, id)
			r.log.LogAttrs(context.Background(), slog.LevelInfo, "kafkastore: partitions of a failed broker have new leaders; routing to all partitions again",
				slog.Int("broker", int(id)), slog.Any("partitions", f.led), slog.Bool("expired", !moved))
		}
	}
	r.degraded.Store(len(r.brokers) > 0)
}

// failed records that the write of batch value (a Message.Partition value,
// see pick) failed with cause, a retriable error, and starts a metadata
// refresh. It returns the partition the batch went to, and whether another
// partition may take it at once.
func (r *partitionRouter) failed(ctx context.Context, value int, cause error) (partition int, leader int32, elsewhere bool) {
	r.refresh()
	l, ok := r.layout(ctx)
	if !ok {
		return -1, -1, false
	}
	partition = value % len(l.leaders)
	leader = l.leaders[partition]
	r.mu.Lock()
	defer r.mu.Unlock()
	until := time.Now().Add(avoidFor)
	switch {
	case leader < 0:
		// An election in progress: the partition has no leader to fail.
	case kafkaconn.ConnectionFailure(cause):
		// The broker the connection was to, when the error names it: the
		// metadata may have moved the partition since the batch left.
		var operr *net.OpError
		if errors.As(cause, &operr) && operr.Addr != nil {
			if id, ok := l.addrs[operr.Addr.String()]; ok {
				leader = id
			}
		}
		f := r.brokers[leader]
		if f == nil {
			f = &brokerFailure{}
			r.brokers[leader] = f
			for p, id := range l.leaders {
				if id == leader {
					f.led = append(f.led, p)
				}
			}
			r.log.LogAttrs(ctx, slog.LevelWarn, "kafkastore: broker unreachable; routing batches to partitions led by other brokers until its partitions have new leaders",
				slog.Int("broker", int(leader)), slog.Any("partitions", f.led), slog.Any("error", cause))
		}
		f.until = until
	}
	// A partition whose leader moved ("not the leader") needs no memory:
	// the refresh above shows its new leader, and the batch goes to the
	// next partition meanwhile.
	r.degraded.Store(len(r.brokers) > 0)
	for p, id := range l.leaders {
		if p != partition && r.usable(l, p, id) {
			return partition, leader, true
		}
	}
	return partition, leader, false
}

// refresh makes kafka-go's transport fetch the cluster metadata now,
// unless a refresh is in progress; it does not wait for it.
func (r *partitionRouter) refresh() {
	r.refreshMu.Lock()
	defer r.refreshMu.Unlock()
	if r.refreshing != nil {
		return
	}
	done := make(chan struct{})
	r.refreshing = done
	go func() {
		defer func() {
			r.refreshMu.Lock()
			r.refreshing = nil
			r.refreshMu.Unlock()
			close(done)
		}()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		// The transport's connection for metadata may be to the broker
		// that failed: a second attempt connects to another one.
		for range 3 {
			_, err := r.transport.RoundTrip(ctx, r.addr, &metadataapi.Request{
				TopicNames:             []string{r.topic, refreshTopic},
				AllowAutoTopicCreation: true,
			})
			if err == nil || ctx.Err() != nil {
				return
			}
		}
	}()
}

// wait returns when the refresh in progress, if any, has ended, or ctx is
// done.
func (r *partitionRouter) wait(ctx context.Context) {
	r.refreshMu.Lock()
	done := r.refreshing
	r.refreshMu.Unlock()
	if done == nil {
		return
	}
	select {
	case <-done:
	case <-ctx.Done():
	}
}
