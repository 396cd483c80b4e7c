package kafkatest

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/segmentio/kafka-go"
)

// Nodes is the number of nodes (brokers) of the cluster; kfake and
// external clusters count as one and as their bootstrap addresses.
func (b *Broker) Nodes() int {
	if b.apache != nil {
		return len(b.apache.nodes)
	}
	return len(b.addrs)
}

// NodeAddr is the address of node i (its node.id) on the broker's listener.
func (b *Broker) NodeAddr(i int) string {
	if b.apache != nil {
		return b.apache.nodes[i].addr(b.sec)
	}
	return b.addrs[i]
}

func (b *Broker) node(i int) (*apacheNode, error) {
	if b.apache == nil || !b.dedicated {
		return nil, errNotDedicated
	}
	if i < 0 || i >= len(b.apache.nodes) {
		return nil, fmt.Errorf("kafkatest: node %d: the cluster has nodes 0 to %d", i, len(b.apache.nodes)-1)
	}
	return b.apache.nodes[i], nil
}

// Kill kills node i with SIGKILL, as a crash or power loss would: no
// controlled shutdown, no leadership handed over. Its data directory and
// ports are kept for Restart.
func (b *Broker) Kill(i int) error {
	n, err := b.node(i)
	if err != nil {
		return err
	}
	n.proc.Kill()
	return nil
}

// Restart starts node i again, after Kill, on the same ports and data
// directory, and returns once it answers Metadata listing every live node.
// Its replicas may still be catching up: see WaitInSync.
func (b *Broker) Restart(ctx context.Context, i int) error {
	n, err := b.node(i)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	for {
		if err := n.proc.Start(); err != nil {
			return err
		}
		live := 0
		for _, o := range b.apache.nodes {
			if o.proc.Running() {
				live++
			}
		}
		err := n.waitReady(ctx, live)
		// Under ZooKeeper, a broker restarted within the session timeout
		// of the one killed finds its old registration and exits: start it
		// again once that has expired.
		if err == nil || b.apache.zk == nil || n.proc.Running() || !strings.Contains(n.proc.LogTail(16<<10), "NodeExists") {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// Running reports whether node i's process is alive (false after Kill).
func (b *Broker) Running(i int) bool {
	n, err := b.node(i)
	return err == nil && n.proc.Running()
}

// Leader returns the node id of the leader of a partition, as the first
// live node that answers sees it; -1 while there is none (an election in
// progress).
func (b *Broker) Leader(ctx context.Context, topic string, partition int) (int, error) {
	var errs []error
	for _, addr := range b.liveAddrs() {
		parts, err := b.partitionsAt(ctx, addr, topic)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, p := range parts {
			if p.ID == partition {
				if p.Leader.Port == 0 {
					return -1, nil
				}
				return p.Leader.ID, nil
			}
		}
		return 0, fmt.Errorf("kafkatest: %s has no partition %s/%d", addr, topic, partition)
	}
	return 0, fmt.Errorf("kafkatest: leader of %s/%d: %w", topic, partition, errors.Join(errs...))
}

// Coordinator returns the node id of a consumer group's coordinator,
// waiting while the brokers answer that none is available (the offsets
// topic is created on the first lookup).
func (b *Broker) Coordinator(ctx context.Context, group string) (int, error) {
	for {
		id, err := b.coordinator(ctx, group)
		if err == nil || !errors.Is(err, kafka.GroupCoordinatorNotAvailable) {
			return id, err
		}
		select {
		case <-ctx.Done():
			return 0, fmt.Errorf("%w (%w)", err, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (b *Broker) coordinator(ctx context.Context, group string) (int, error) {
	var errs []error
	for _, addr := range b.liveAddrs() {
		client, tr := b.client()
		res, err := client.FindCoordinator(ctx, &kafka.FindCoordinatorRequest{
			Addr: kafka.TCP(addr), Key: group, KeyType: kafka.CoordinatorKeyTypeConsumer,
		})
		tr.CloseIdleConnections()
		if err == nil {
			err = res.Error
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		return res.Coordinator.NodeID, nil
	}
	return 0, fmt.Errorf("kafkatest: coordinator of group %q: %w", group, errors.Join(errs...))
}

// ZooKeeper reports whether the cluster runs with ZooKeeper (Apache Kafka
// before 3.5) rather than KRaft.
func (b *Broker) ZooKeeper() bool { return b.apache != nil && b.apache.zk != nil }

// Controller returns the node id of the active controller of a ZooKeeper
// cluster, a broker elected among the brokers: killing it is a controller
// failover. Under KRaft the Metadata response names a random broker
// rather than the active controller (the quorum leader), and Controller
// returns an error; every KRaft node here is a controller, so killing any
// may be one.
func (b *Broker) Controller(ctx context.Context) (int, error) {
	if !b.ZooKeeper() {
		return 0, fmt.Errorf("kafkatest: Controller needs a ZooKeeper cluster (Apache Kafka before 3.5); %s runs KRaft, whose Metadata does not name the active controller", b)
	}
	var errs []error
	for _, addr := range b.liveAddrs() {
		client, tr := b.client()
		md, err := client.Metadata(ctx, &kafka.MetadataRequest{Addr: kafka.TCP(addr)})
		tr.CloseIdleConnections()
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if md.Controller.Port == 0 {
			return -1, nil // an election in progress
		}
		return md.Controller.ID, nil
	}
	return 0, fmt.Errorf("kafkatest: controller: %w", errors.Join(errs...))
}

// NodeRSS is the resident memory of node i's JVM, in bytes (Linux only).
func (b *Broker) NodeRSS(i int) (int64, error) {
	if b.apache == nil || i < 0 || i >= len(b.apache.nodes) {
		return 0, fmt.Errorf("kafkatest: NodeRSS(%d): not an Apache Kafka node", i)
	}
	return b.apache.nodes[i].proc.RSS()
}

// ZooKeeperRSS is the resident memory of a ZooKeeper cluster's ZooKeeper
// server, in bytes (Linux only).
func (b *Broker) ZooKeeperRSS() (int64, error) {
	if !b.ZooKeeper() {
		return 0, fmt.Errorf("kafkatest: ZooKeeperRSS: %s has no ZooKeeper server", b)
	}
	return b.apache.zk.proc.RSS()
}

// StartupTime is how long the cluster took from formatting its storage to
// answering Metadata; 0 for kfake and external brokers.
func (b *Broker) StartupTime() time.Duration {
	if b.apache == nil {
		return 0
	}
	return b.apache.startup
}

// WaitInSync waits until every partition of topic has a leader and all of
// its replicas in sync, as every live node reports it: after a Restart,
// the node has caught up.
func (b *Broker) WaitInSync(ctx context.Context, topic string) error {
	var last error
	for {
		last = b.inSync(ctx, topic)
		if last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("kafkatest: %s not in sync: %w (last: %v)", topic, ctx.Err(), last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// inSync asks every live node: under ZooKeeper each broker learns of
// topics and leaders from the controller asynchronously, so one that
// reports the topic in sync does not mean another knows it yet.
func (b *Broker) inSync(ctx context.Context, topic string) error {
	addrs := b.liveAddrs()
	if len(addrs) == 0 {
		return errors.New("no live node")
	}
	for _, addr := range addrs {
		parts, err := b.partitionsAt(ctx, addr, topic)
		if err != nil {
			return fmt.Errorf("%s: %w", addr, err)
		}
		if len(parts) == 0 {
			return fmt.Errorf("%s: no partitions of %q", addr, topic)
		}
		for _, p := range parts {
			if p.Leader.Port == 0 || len(p.Isr) < len(p.Replicas) {
				return fmt.Errorf("%s: partition %d: leader %d, replicas %d, in sync %d", addr, p.ID, p.Leader.ID, len(p.Replicas), len(p.Isr))
			}
		}
	}
	return nil
}

// liveAddrs are the addresses of the nodes whose process runs (every
// address for kfake and external brokers).
func (b *Broker) liveAddrs() []string {
	if b.apache == nil {
		return b.Addrs()
	}
	var out []string
	for _, n := range b.apache.nodes {
		if n.proc.Running() {
			out = append(out, n.addr(b.sec))
		}
	}
	return out
}
