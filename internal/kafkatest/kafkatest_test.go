package kafkatest_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/go-whisk/activationstore/internal/kafkatest"
)

func TestMain(m *testing.M) { kafkatest.Main(m) }

func TestBrokerRoundTrip(t *testing.T) {
	b := kafkatest.Start(t)
	t.Logf("broker: %s", b)
	topic := kafkatest.Topic(t, "completed")
	b.CreateTopic(t, topic, 3, map[string]string{"max.message.bytes": "2048"})

	w := &kafka.Writer{Addr: kafka.TCP(b.Addr()), Topic: topic, BatchTimeout: time.Millisecond, RequiredAcks: kafka.RequireAll, Transport: b.Transport()}
	defer w.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := w.WriteMessages(ctx, kafka.Message{Key: []byte("k"), Value: []byte("v")}); err != nil {
		t.Fatalf("write: %v", err)
	}
	ends, err := b.EndOffsets(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	var total int64
	for _, o := range ends {
		total += o
	}
	if len(ends) != 3 || total != 1 {
		t.Fatalf("end offsets = %v, want 3 partitions holding 1 record", ends)
	}
	err = w.WriteMessages(ctx, kafka.Message{Value: make([]byte, 4096)})
	if err == nil {
		t.Fatal("a 4 KiB record on a topic with max.message.bytes=2048 was accepted")
	}
}

// TestSecureListeners produces and consumes with kafka-go over TLS,
// SASL/SCRAM-SHA-512 and both, on the broker the environment selects.
func TestSecureListeners(t *testing.T) {
	for name, opts := range map[string][]kafkatest.Option{
		"TLS":       {kafkatest.WithTLS()},
		"SCRAM":     {kafkatest.WithSCRAM()},
		"SCRAM+TLS": {kafkatest.WithSCRAM(), kafkatest.WithTLS()},
	} {
		t.Run(name, func(t *testing.T) {
			roundTrip(t, kafkatest.Start(t, opts...))
		})
	}
}

// TestApacheListeners starts one Apache Kafka node and uses each of its
// listeners with kafka-go.
func TestApacheListeners(t *testing.T) {
	if testing.Short() {
		t.Skip("starts an Apache Kafka JVM: skipped under -short")
	}
	b := kafkatest.StartApache(t)
	rss, err := b.NodeRSS(0)
	if err != nil {
		t.Fatal(err)
	}
	zk := "KRaft"
	if b.ZooKeeper() {
		zkRSS, err := b.ZooKeeperRSS()
		if err != nil {
			t.Fatal(err)
		}
		zk = fmt.Sprintf("ZooKeeper server RSS %d MiB", zkRSS>>20)
	}
	t.Logf("SUMMARY TestApacheListeners: Apache Kafka %s, 1 node, ready in %v, RSS %d MiB; %s", b.Version(), b.StartupTime().Round(time.Millisecond), rss>>20, zk)
	for name, opts := range map[string][]kafkatest.Option{
		"plaintext": nil,
		"TLS":       {kafkatest.WithTLS()},
		"SCRAM":     {kafkatest.WithSCRAM()},
		"SCRAM+TLS": {kafkatest.WithSCRAM(), kafkatest.WithTLS()},
	} {
		t.Run(name, func(t *testing.T) { roundTrip(t, b.Listener(opts...)) })
	}
}

// TestStartFakeCluster: kfake's control surface is there on StartFake
// whatever the environment selects.
func TestStartFakeCluster(t *testing.T) {
	b := kafkatest.StartFake(t)
	if b.Kind() != kafkatest.KindFake || b.Cluster() == nil {
		t.Fatalf("StartFake gave %s", b)
	}
	if err := b.Kill(0); err == nil {
		t.Fatal("Kill on kfake succeeded; want an error naming StartApache")
	}
}

// roundTrip writes a record with acks=all and reads it back through the
// broker's own client settings.
func roundTrip(t *testing.T, b *kafkatest.Broker) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	topic := kafkatest.Topic(t, "secure")
	b.CreateTopic(t, topic, 1, nil)
	tr := b.Transport()
	defer tr.CloseIdleConnections()
	w := &kafka.Writer{Addr: kafka.TCP(b.Addrs()...), Topic: topic, Transport: tr, BatchTimeout: time.Millisecond, RequiredAcks: kafka.RequireAll}
	defer w.Close()
	want := fmt.Sprintf("over %s", b)
	if err := w.WriteMessages(ctx, kafka.Message{Value: []byte(want)}); err != nil {
		t.Fatalf("produce %s: %v", b, err)
	}
	r := kafka.NewReader(kafka.ReaderConfig{Brokers: b.Addrs(), Topic: topic, Dialer: b.Dialer(), MaxWait: 100 * time.Millisecond})
	defer r.Close()
	m, err := r.ReadMessage(ctx)
	if err != nil {
		t.Fatalf("consume %s: %v", b, err)
	}
	if string(m.Value) != want {
		t.Fatalf("read %q, want %q", m.Value, want)
	}

	// The same listener refuses a client without the credentials.
	if user, _ := b.SCRAMCredentials(); user != "" {
		plain := &kafka.Transport{TLS: b.TLS(), DialTimeout: 5 * time.Second}
		defer plain.CloseIdleConnections()
		bad := &kafka.Writer{Addr: kafka.TCP(b.Addr()), Topic: topic, Transport: plain, MaxAttempts: 1, RequiredAcks: kafka.RequireAll}
		defer bad.Close()
		short, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		if err := bad.WriteMessages(short, kafka.Message{Value: []byte("x")}); err == nil {
			t.Fatalf("%s accepted a record from a client that did not authenticate", b)
		}
	}
}

// TestApacheCluster starts three Apache Kafka nodes, kills the leader of a
// partition under acks=all writes, and restarts it; under ZooKeeper, then
// the controller.
func TestApacheCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three Apache Kafka JVMs: skipped under -short")
	}
	b := kafkatest.StartApache(t, kafkatest.WithNodes(3))
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	topic := kafkatest.Topic(t, "cluster")
	b.CreateTopic(t, topic, 3, nil)
	if err := b.WaitInSync(ctx, topic); err != nil {
		t.Fatal(err)
	}
	for i := range b.Nodes() {
		rss, err := b.NodeRSS(i)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("SUMMARY TestApacheCluster: Apache Kafka %s, 3 nodes, ready in %v; node %d RSS %d MiB", b.Version(), b.StartupTime().Round(time.Millisecond), i, rss>>20)
	}
	leader, err := b.Leader(ctx, topic, 0)
	if err != nil || leader < 0 || leader > 2 {
		t.Fatalf("Leader = %d, %v", leader, err)
	}
	group := kafkatest.Topic(t, "group")
	coord, err := b.Coordinator(ctx, group)
	if err != nil || coord < 0 || coord > 2 {
		t.Fatalf("Coordinator = %d, %v", coord, err)
	}

	// Writes go through the SCRAM listener, and a view of it may kill nodes.
	scram := b.Listener(kafkatest.WithSCRAM())
	write := func(v string) error {
		tr := scram.Transport()
		defer tr.CloseIdleConnections()
		w := &kafka.Writer{Addr: kafka.TCP(scram.Addrs()...), Topic: topic, Transport: tr, Balancer: kafka.BalancerFunc(func(kafka.Message, ...int) int { return 0 }),
			BatchTimeout: time.Millisecond, RequiredAcks: kafka.RequireAll, MaxAttempts: 30, WriteBackoffMax: time.Second}
		defer w.Close()
		return w.WriteMessages(ctx, kafka.Message{Value: []byte(v)})
	}
	if err := write("before"); err != nil {
		t.Fatal(err)
	}
	if err := scram.Kill(leader); err != nil {
		t.Fatal(err)
	}
	if b.Running(leader) {
		t.Fatalf("node %d still running after Kill", leader)
	}
	start := time.Now()
	writeThrough(t, ctx, "during", write)
	t.Logf("write after killing leader %d took %v", leader, time.Since(start).Round(time.Millisecond))
	newLeader, err := b.Leader(ctx, topic, 0)
	if err != nil || newLeader == leader || newLeader < 0 {
		t.Fatalf("leader after killing node %d = %d, %v", leader, newLeader, err)
	}
	if err := b.Restart(ctx, leader); err != nil {
		t.Fatal(err)
	}
	if err := b.WaitInSync(ctx, topic); err != nil {
		t.Fatal(err)
	}
	ends, err := b.EndOffsets(ctx, topic)
	if err != nil || ends[0] < 2 {
		t.Fatalf("end offsets %v, %v: want the 2 acknowledged records (or more: see below) in partition 0", ends, err)
	}
	if err := b.Restart(ctx, leader); err == nil {
		t.Fatal("Restart of a running node succeeded")
	}

	// A controller failover: under ZooKeeper the controller is one of the
	// brokers, and another takes over when it dies.
	controller, err := b.Controller(ctx)
	if !b.ZooKeeper() {
		if err == nil {
			t.Fatalf("Controller on KRaft = %d, want an error", controller)
		}
		return
	}
	if err != nil || controller < 0 || controller > 2 {
		t.Fatalf("Controller = %d, %v", controller, err)
	}
	if err := b.Kill(controller); err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	writeThrough(t, ctx, "controller gone", write)
	for {
		c, err := b.Controller(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if c >= 0 && c != controller {
			t.Logf("controller %d killed; node %d took over within %v", controller, c, time.Since(start).Round(time.Millisecond))
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("no new controller after killing node %d: %v", controller, ctx.Err())
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err := b.Restart(ctx, controller); err != nil {
		t.Fatal(err)
	}
	if err := b.WaitInSync(ctx, topic); err != nil {
		t.Fatal(err)
	}
	// kafka-go's writer is not idempotent: an attempt that timed out
	// during the failover may have been written as well as its retry.
	if ends, err := b.EndOffsets(ctx, topic); err != nil || ends[0] < 3 {
		t.Fatalf("end offsets %v, %v: want the 3 acknowledged records (or more) in partition 0", ends, err)
	}
}

// writeThrough writes v until it is acknowledged, failing the test when
// ctx ends: through a failover, kafka-go's writer gives up at once when
// the metadata shows a partition without a leader (under ZooKeeper, a
// moment of an election; and when the controller led the partition too,
// its new leader comes only once ZooKeeper has expired the controller's
// session and a new controller has loaded the cluster's state).
func writeThrough(t *testing.T, ctx context.Context, v string, write func(string) error) {
	t.Helper()
	start := time.Now()
	for {
		err := write(v)
		if err == nil {
			return
		}
		if ctx.Err() != nil {
			t.Fatalf("acks=all write %q through the failover: %v", v, err)
		}
		t.Logf("write %q, after %v: %v; again", v, time.Since(start).Round(time.Millisecond), err)
		time.Sleep(200 * time.Millisecond)
	}
}

// TestNodeControlsNeedADedicatedCluster: the shared brokers refuse Kill.
func TestNodeControlsNeedADedicatedCluster(t *testing.T) {
	b := kafkatest.Start(t)
	if b.Kind() == kafkatest.KindFake {
		return // covered by TestStartFakeCluster
	}
	if err := b.Kill(0); err == nil {
		t.Fatalf("Kill on %s succeeded", b)
	}
}

func TestSelected(t *testing.T) {
	for _, tc := range []struct {
		mode, brokers string
		want          kafkatest.Kind
		err           bool
	}{
		{"", "", kafkatest.KindFake, false},
		{"kfake", "", kafkatest.KindFake, false},
		{"apache", "", kafkatest.KindApache, false},
		{"apache", "127.0.0.1:9092", kafkatest.KindExternal, false},
		{"zookeeper", "", "", true},
	} {
		t.Setenv(kafkatest.EnvMode, tc.mode)
		t.Setenv(kafkatest.EnvBrokers, tc.brokers)
		got, err := kafkatest.Selected()
		if (err != nil) != tc.err || got != tc.want {
			t.Errorf("%s=%q %s=%q: Selected() = %v, %v; want %v, error %v", kafkatest.EnvMode, tc.mode, kafkatest.EnvBrokers, tc.brokers, got, err, tc.want, tc.err)
		}
	}
}

// TestCIKafkaVersions: .ci/run reads its versions from CIKafkaVersions:
// the oldest supported first, then a 3.x, a 4.0.x and the pinned one.
func TestCIKafkaVersions(t *testing.T) {
	vs := strings.Fields(kafkatest.CIKafkaVersions)
	if len(vs) != 4 || vs[0] != kafkatest.OldestKafkaVersion || vs[3] != kafkatest.KafkaVersion ||
		!strings.HasPrefix(vs[1], "3.") || !strings.HasPrefix(vs[2], "4.0.") {
		t.Fatalf("CIKafkaVersions = %q: want %s, a 3.x, a 4.0.x, %s", kafkatest.CIKafkaVersions, kafkatest.OldestKafkaVersion, kafkatest.KafkaVersion)
	}
}
