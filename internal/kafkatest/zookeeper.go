package kafkatest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"strconv"
	"sync"
	"time"

	"github.com/go-whisk/activationstore/internal/childproc"
)

// Apache Kafka before 3.5 runs here with ZooKeeper: one standalone
// ZooKeeper server (org.apache.zookeeper.server.ZooKeeperServerMain, from
// the zookeeper jar kafka_2.13 depends on: 3.5.8 for Kafka 2.7.0, 3.5.9
// for 2.7.1 to 2.8.x) and the brokers. The brokers elect a controller
// among themselves; killing that broker is a controller failover.

// zkAddr is the ZooKeeper server's client address.
func (n *apacheNode) zkAddr() string { return "127.0.0.1:" + strconv.Itoa(n.ports[0]) }

// bootZooKeeper starts the ZooKeeper server, then the brokers, while it
// adds the SCRAM user to ZooKeeper (Kafka's ConfigCommand); it returns
// once both are done and every broker answers Metadata listing all.
func (c *apacheCluster) bootZooKeeper(ctx context.Context) error {
	start := time.Now()
	if err := c.zk.proc.Start(); err != nil {
		return err
	}
	if err := c.zk.waitListening(ctx, time.Minute); err != nil {
		return err
	}
	for _, n := range c.nodes {
		if err := n.proc.Start(); err != nil {
			return err
		}
	}
	// The brokers read SCRAM users from ZooKeeper as they change: adding
	// the user while they start is enough, and saves seconds.
	var wg sync.WaitGroup
	var scramErr error
	wg.Go(func() { scramErr = c.addSCRAMUser(ctx) })
	err := c.waitReady(ctx, 3*time.Minute)
	wg.Wait()
	if err := errors.Join(err, scramErr); err != nil {
		return err
	}
	c.startup = time.Since(start)
	return nil
}

// waitListening waits until the ZooKeeper server accepts connections.
func (n *apacheNode) waitListening(ctx context.Context, within time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, within)
	defer cancel()
	return n.proc.WaitReady(ctx, "Address already in use", 50*time.Millisecond, func(ctx context.Context) error {
		conn, err := (&net.Dialer{Timeout: time.Second}).DialContext(ctx, "tcp", n.zkAddr())
		if err == nil {
			_ = conn.Close()
		}
		return err
	})
}

// addSCRAMUser stores the SCRAM-SHA-512 credentials of scramUser in
// ZooKeeper, as kafka-configs.sh --zookeeper does.
func (c *apacheCluster) addSCRAMUser(ctx context.Context) error {
	args := append(c.jvmArgs("128m"), "kafka.admin.ConfigCommand",
		"--zookeeper", c.zk.zkAddr(), "--alter",
		"--entity-type", "users", "--entity-name", scramUser,
		"--add-config", fmt.Sprintf("SCRAM-SHA-512=[password=%s]", c.password))
	cmd := exec.CommandContext(ctx, c.java, args...)
	cmd.Dir = c.dir
	cmd.SysProcAttr = childproc.SysProcAttr()
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("add the SCRAM user to ZooKeeper (kafka.admin.ConfigCommand): %w\n%s", err, redactSecret(out, c.password))
	}
	return nil
}
