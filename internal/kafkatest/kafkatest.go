// Package kafkatest gives tests a Kafka broker on 127.0.0.1.
//
// Environment variables choose which, the way couchtest's COUCHDB_URL
// does:
//
//   - unset, or KAFKATEST=kfake: franz-go's in-process broker (kfake), a
//     new one for every [Start]. Fast; no replication.
//   - KAFKATEST=apache: real Apache Kafka ([KafkaVersion], or the version
//     in KAFKATEST_KAFKA_VERSION), one node per test binary, shared by
//     every [Start] of the binary (topic names from [Topic] are unique):
//     from 3.5 on a combined broker+controller JVM (KRaft); before 3.5
//     (2.7.x, 2.8.x, 3.0 to 3.4) a broker JVM and a ZooKeeper server JVM,
//     ZooKeeper from the zookeeper jar Kafka depends on. Its jars come from Maven Central on
//     first use and are cached in the user's cache directory; Java 17 or
//     newer and, for the first use of a version, mvn must be installed.
//     Wire [Main] into TestMain so that the JVM stops with the tests.
//   - KAFKA_BROKERS=host:port[,host:port…]: an existing plaintext cluster,
//     shared likewise. It takes precedence over KAFKATEST. Tests that ask
//     for TLS or SCRAM get kfake instead, and say so in their log.
//
// Tests that need more than a broker say so: [StartFake] for kfake's fault
// injection ([Broker.Cluster]), [StartApache] for a dedicated Apache
// cluster of one or more nodes that a test may kill and restart
// ([Broker.Kill], [Broker.Restart]). TLS and SASL/SCRAM-SHA-512 listeners
// come with [WithTLS] and [WithSCRAM]; the Broker then hands out
// client settings ([Broker.TLS], [Broker.SASL], [Broker.Transport],
// [Broker.Dialer]).
//
// A test that cannot get its broker fails with the reason; none skips.
package kafkatest

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/sasl"
	"github.com/segmentio/kafka-go/sasl/scram"
	"github.com/twmb/franz-go/pkg/kfake"
)

// KafkaVersion is the Apache Kafka release the tests run against unless
// KAFKATEST_KAFKA_VERSION names another.
const KafkaVersion = "4.4.0"

// OldestKafkaVersion is the oldest Apache Kafka release the library
// supports (README, "Supported Kafka versions"): what OpenWhisk's ansible
// deployment runs (wurstmeister/kafka:2.13-2.7.0, with ZooKeeper).
const OldestKafkaVersion = "2.7.0"

// CIKafkaVersions are the Apache Kafka releases .ci/run runs the
// Kafka-facing packages against, oldest first: OldestKafkaVersion (with
// ZooKeeper), the 3.x of OpenWhisk's Scala client (kafka-clients 3.9.1;
// KRaft), 4.0.0 (the first without ZooKeeper and without the request
// versions KIP-896 removed) and KafkaVersion.
const CIKafkaVersions = "2.7.0 3.9.1 4.0.0 4.4.0"

// Environment variables that choose the broker.
const (
	// EnvBrokers names an existing cluster: "host:port[,host:port…]".
	EnvBrokers = "KAFKA_BROKERS"
	// EnvMode is "kfake" (the default) or "apache".
	EnvMode = "KAFKATEST"
	// EnvVersion overrides KafkaVersion for KAFKATEST=apache and StartApache.
	EnvVersion = "KAFKATEST_KAFKA_VERSION"
)

// defaultHeap is the JVM heap of an Apache node: enough for the tests'
// volumes, small enough for three nodes on a laptop.
const defaultHeap = "384m"

// Kind says what a Broker is.
type Kind string

const (
	// KindFake is kfake, in process.
	KindFake Kind = "kfake"
	// KindApache is Apache Kafka started by this package.
	KindApache Kind = "apache"
	// KindExternal is a cluster named by KAFKA_BROKERS.
	KindExternal Kind = "external"
)

// Selected is the kind of broker Start gives, from the environment:
// KAFKA_BROKERS, then KAFKATEST.
func Selected() (Kind, error) {
	if os.Getenv(EnvBrokers) != "" {
		return KindExternal, nil
	}
	switch m := os.Getenv(EnvMode); m {
	case "", "kfake":
		return KindFake, nil
	case "apache":
		return KindApache, nil
	default:
		return "", fmt.Errorf("%s=%q: want kfake or apache", EnvMode, m)
	}
}

// Version is the Apache Kafka version StartApache and KAFKATEST=apache
// run: KAFKATEST_KAFKA_VERSION, or KafkaVersion.
func Version() string {
	if v := os.Getenv(EnvVersion); v != "" {
		return v
	}
	return KafkaVersion
}

// Option configures Start, StartApache or StartFake's security.
type Option func(*options)

type options struct {
	tls, scram bool
	nodes      int
	version    string
}

func (o options) security() security {
	switch {
	case o.tls && o.scram:
		return secSCRAMTLS
	case o.tls:
		return secTLS
	case o.scram:
		return secSCRAM
	}
	return secPlain
}

// WithTLS connects over TLS, with a certificate for 127.0.0.1 signed by a
// CA the test generates; Broker.TLS trusts it.
func WithTLS() Option { return func(o *options) { o.tls = true } }

// WithSCRAM authenticates with SASL/SCRAM-SHA-512 as a user of the
// broker's; Broker.SASL and Broker.SCRAMCredentials give it. Combine
// with WithTLS for SASL_SSL.
func WithSCRAM() Option { return func(o *options) { o.scram = true } }

// WithNodes sets the number of nodes of a StartApache cluster (default 1).
// Under KRaft every node is a broker and a controller; under ZooKeeper
// (before 3.5) every node is a broker, one of them the controller
// ([Broker.Controller]), and one ZooKeeper server serves them all (it is
// not among the nodes, and no test kills it). With three or more nodes,
// topics get three replicas and min.insync.replicas=2, so that the cluster
// survives the loss of one node without losing acknowledged records.
func WithNodes(n int) Option { return func(o *options) { o.nodes = n } }

// WithVersion sets the Apache Kafka version of a StartApache cluster
// (default Version()).
func WithVersion(v string) Option { return func(o *options) { o.version = v } }

// Broker is a Kafka cluster as one test sees it: addresses on the listener
// of the security the test asked for, and the client settings that go
// with them.
type Broker struct {
	kind   Kind
	t      testing.TB // for methods that fail the test; nil from New
	sec    security
	addrs  []string
	tls    *tls.Config // client side; nil without TLS
	caPEM  []byte      // the CA tls trusts; nil without TLS
	scram  string      // SCRAM password; "" without SASL
	fake   *kfake.Cluster
	apache *apacheCluster
	owned  bool // Close stops it (not the shared broker, not a Listener view)
	// dedicated: a StartApache cluster (or a view of one), whose nodes the
	// test may kill.
	dedicated bool
	closeMu   sync.Once
}

// Start returns the broker the environment selects (see the package
// documentation): a new kfake broker, closed when the test ends, or the
// test binary's shared Apache or external cluster. It fails the test when
// no broker can be had. WithNodes and WithVersion belong to StartApache.
func Start(t testing.TB, opts ...Option) *Broker {
	t.Helper()
	o := applyOptions(opts)
	if o.nodes != 0 || o.version != "" {
		t.Fatalf("kafkatest: WithNodes and WithVersion apply to StartApache, not Start")
	}
	kind, err := Selected()
	if err != nil {
		t.Fatalf("kafkatest: %v", err)
	}
	switch kind {
	case KindApache:
		c, err := sharedApache()
		if err != nil {
			t.Fatalf("kafkatest: no Apache Kafka broker for the tests (%s=apache): %v", EnvMode, err)
		}
		b := apacheBroker(t, c, opts, false)
		watchShared(t)
		return b
	case KindExternal:
		if o.tls || o.scram {
			t.Logf("kafkatest: %s names plaintext brokers; this test's %s broker is kfake", EnvBrokers, o.security())
			return startFake(t, o)
		}
		return &Broker{kind: KindExternal, t: t, addrs: splitAddrs(os.Getenv(EnvBrokers))}
	default:
		return startFake(t, o)
	}
}

// StartFake starts a kfake broker whatever the environment selects, for
// tests that need kfake's control surface (Cluster) or its options. It is
// closed when the test ends.
func StartFake(t testing.TB, opts ...kfake.Opt) *Broker {
	t.Helper()
	b, err := New(opts...)
	if err != nil {
		t.Fatalf("kafkatest: start in-process kfake broker: %v", err)
	}
	b.t = t
	t.Cleanup(b.Close)
	return b
}

func startFake(t testing.TB, o options) *Broker {
	t.Helper()
	var extra []kfake.Opt
	var clientTLS *tls.Config
	var caPEM []byte
	var password string
	if o.tls {
		certs, err := newTestCerts()
		if err != nil {
			t.Fatalf("kafkatest: generate TLS certificates: %v", err)
		}
		extra = append(extra, kfake.TLS(certs.serverConfig()))
		clientTLS, caPEM = certs.clientConfig(), certs.caPEM
	}
	if o.scram {
		password = rand.Text()
		extra = append(extra, kfake.EnableSASL(), kfake.Superuser("SCRAM-SHA-512", scramUser, password))
	}
	b := StartFake(t, extra...)
	b.sec, b.tls, b.caPEM, b.scram = o.security(), clientTLS, caPEM, password
	return b
}

// New starts a kfake broker that the caller must Close, whatever the
// environment selects; for programs (the quickstart) and for tests that
// stop the broker under a running client.
func New(opts ...kfake.Opt) (*Broker, error) {
	all := append([]kfake.Opt{
		kfake.NumBrokers(1),
		kfake.Ports(0),
		// Tests use short group session timeouts so that members that
		// stop or crash are replaced in seconds.
		kfake.GroupMinSessionTimeout(100 * time.Millisecond),
		kfake.ListenFn(func(network, _ string) (net.Listener, error) {
			return net.Listen(network, "127.0.0.1:0")
		}),
	}, opts...)
	c, err := kfake.NewCluster(all...)
	if err != nil {
		return nil, err
	}
	return &Broker{kind: KindFake, fake: c, addrs: c.ListenAddrs(), owned: true}, nil
}

// StartApache starts a dedicated Apache Kafka cluster (WithNodes,
// WithVersion, default one node of Version()), whatever the environment
// selects; it is stopped when the test ends. Its nodes may be killed and
// restarted. Expect 5 to 20 s of start-up.
func StartApache(t testing.TB, opts ...Option) *Broker {
	t.Helper()
	o := applyOptions(opts)
	spec := apacheSpec{version: o.version, nodes: max(o.nodes, 1)}
	if spec.version == "" {
		spec.version = Version()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	c, err := startApache(ctx, spec)
	if err != nil {
		t.Fatalf("kafkatest: %v", err)
	}
	t.Logf("kafkatest: Apache Kafka %s (%s), %d node(s), ready in %v; logs: %s", spec.version, spec.mode(), spec.nodes, c.startup.Round(time.Millisecond), c.logs())
	b := apacheBroker(t, c, opts, true)
	t.Cleanup(b.Close)
	return b
}

// apacheBroker is a test's view of an Apache cluster; on failure it shows
// the nodes' logs.
func apacheBroker(t testing.TB, c *apacheCluster, opts []Option, owned bool) *Broker {
	b := (&Broker{apache: c, t: t, dedicated: owned}).Listener(opts...)
	b.owned = owned
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("kafkatest: Apache Kafka %s logs (kept): %s; node 0 ends with:\n%s", c.spec.version, c.logs(), c.nodes[0].proc.LogTail(4<<10))
		}
	})
	return b
}

func applyOptions(opts []Option) options {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	return o
}

func splitAddrs(s string) []string {
	var out []string
	for a := range strings.SplitSeq(s, ",") {
		if a = strings.TrimSpace(a); a != "" {
			out = append(out, a)
		}
	}
	return out
}

// Close stops a broker this test started (kfake, StartApache) and drops
// its data; on the shared and external clusters it does nothing.
func (b *Broker) Close() {
	b.closeMu.Do(func() {
		switch {
		case !b.owned:
		case b.fake != nil:
			b.fake.Close()
		case b.apache != nil:
			b.apache.close(b.t != nil && b.t.Failed())
		}
	})
}

// Listener returns a view of the same Apache Kafka cluster on the
// listener of other security options (WithTLS, WithSCRAM; none:
// plaintext), for the same test. Closing it does nothing. It fails the
// test on kfake and external brokers, whose one listener is fixed at start.
func (b *Broker) Listener(opts ...Option) *Broker {
	o := applyOptions(opts)
	if b.apache == nil {
		msg := fmt.Sprintf("kafkatest: Listener(%s) needs Apache Kafka; %s has one listener: pass the options to Start", o.security(), b)
		if b.t == nil {
			panic(msg)
		}
		b.t.Helper()
		b.t.Fatal(msg)
	}
	v := &Broker{kind: KindApache, t: b.t, sec: o.security(), addrs: b.apache.addrs(o.security()), apache: b.apache, dedicated: b.dedicated}
	if o.tls {
		v.tls, v.caPEM = b.apache.certs.clientConfig(), b.apache.certs.caPEM
	}
	if o.scram {
		v.scram = b.apache.password
	}
	return v
}

// Kind says what the broker is.
func (b *Broker) Kind() Kind { return b.kind }

// Version is the Apache Kafka version, "" for kfake and external brokers.
func (b *Broker) Version() string {
	if b.apache != nil {
		return b.apache.spec.version
	}
	return ""
}

// String describes the broker for test logs.
func (b *Broker) String() string {
	switch b.kind {
	case KindApache:
		return fmt.Sprintf("Apache Kafka %s (%s, %d node(s), %s)", b.apache.spec.version, b.apache.spec.mode(), len(b.apache.nodes), b.sec)
	case KindExternal:
		return EnvBrokers + "=" + strings.Join(b.addrs, ",")
	}
	return "kfake (" + b.sec.String() + ")"
}

// Addr is the address of the first broker, "127.0.0.1:port".
func (b *Broker) Addr() string { return b.addrs[0] }

// Addrs are the bootstrap addresses: every node's.
func (b *Broker) Addrs() []string { return slices.Clone(b.addrs) }

// TLS is the client TLS configuration for a WithTLS broker (it trusts the
// test CA only), nil otherwise. Each call returns a new one.
func (b *Broker) TLS() *tls.Config {
	if b.tls == nil {
		return nil
	}
	return b.tls.Clone()
}

// CACertPEM is the PEM certificate of the CA that signed a WithTLS
// broker's certificate, the one TLS trusts, for programs configured by
// file; nil without TLS.
func (b *Broker) CACertPEM() []byte { return slices.Clone(b.caPEM) }

// SASL is the SCRAM-SHA-512 mechanism of a WithSCRAM broker's user, nil
// otherwise.
func (b *Broker) SASL() sasl.Mechanism {
	if b.scram == "" {
		return nil
	}
	m, err := scram.Mechanism(scram.SHA512, scramUser, b.scram)
	if err != nil {
		panic("kafkatest: scram.Mechanism: " + err.Error()) // only for an unknown algorithm
	}
	return m
}

// SCRAMCredentials are the user and password of a WithSCRAM broker, ""
// otherwise.
func (b *Broker) SCRAMCredentials() (user, password string) {
	if b.scram == "" {
		return "", ""
	}
	return scramUser, b.scram
}

// Transport is a new kafka-go transport for the broker's listener. A
// transport caches metadata (6 s by default): use a new one where a test
// must see a topic it just created.
func (b *Broker) Transport() *kafka.Transport {
	return &kafka.Transport{TLS: b.TLS(), SASL: b.SASL()}
}

// Dialer is a new kafka-go dialer for the broker's listener (for Readers
// and Conns).
func (b *Broker) Dialer() *kafka.Dialer {
	return &kafka.Dialer{Timeout: 10 * time.Second, DualStack: true, TLS: b.TLS(), SASLMechanism: b.SASL()}
}

// Cluster exposes kfake's control surface (fault injection, ControlKey…).
// It fails the test when the broker is not kfake: start such tests with
// StartFake.
func (b *Broker) Cluster() *kfake.Cluster {
	if b.fake == nil {
		msg := fmt.Sprintf("kafkatest: Cluster() needs the in-process kfake broker, and this test runs against %s: start it with kafkatest.StartFake", b)
		if b.t == nil {
			panic(msg)
		}
		b.t.Helper()
		b.t.Fatal(msg)
	}
	return b.fake
}

// client returns an admin client on a transport of its own, so that topic
// metadata is never served from kafka-go's shared 6 s cache. Close the
// transport after use.
func (b *Broker) client() (*kafka.Client, *kafka.Transport) {
	tr := b.Transport()
	return &kafka.Client{Addr: kafka.TCP(b.addrs...), Transport: tr, Timeout: 10 * time.Second}, tr
}

// CreateTopic creates a topic with the given partitions and topic configs
// (e.g. "max.message.bytes"), failing the test on error. It returns once
// every broker serves the topic.
func (b *Broker) CreateTopic(t testing.TB, name string, partitions int, configs map[string]string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := b.CreateTopicContext(ctx, name, partitions, configs); err != nil {
		t.Fatalf("kafkatest: create topic %q on %s: %v", name, b, err)
	}
}

// CreateTopicContext creates a topic with the broker's default replication
// factor; an existing topic is an error. It returns once every broker
// serves the topic, with a leader for each partition.
func (b *Broker) CreateTopicContext(ctx context.Context, name string, partitions int, configs map[string]string) error {
	entries := make([]kafka.ConfigEntry, 0, len(configs))
	for k, v := range configs {
		entries = append(entries, kafka.ConfigEntry{ConfigName: k, ConfigValue: v})
	}
	client, tr := b.client()
	defer tr.CloseIdleConnections()
	res, err := client.CreateTopics(ctx, &kafka.CreateTopicsRequest{Topics: []kafka.TopicConfig{{
		Topic: name, NumPartitions: partitions, ReplicationFactor: -1, ConfigEntries: entries,
	}}})
	if err != nil {
		return err
	}
	// A ZooKeeper-mode controller answers once every broker serves the
	// topic, and a busy one times out while the creation goes on:
	// awaitTopic waits for it.
	if err := res.Errors[name]; err != nil && !errors.Is(err, kafka.RequestTimedOut) {
		return err
	}
	return b.awaitTopic(ctx, name, partitions)
}

// awaitTopic waits until every broker lists the topic with a leader for
// each partition: Apache Kafka's brokers learn of a new topic from the
// controller asynchronously, after CreateTopics has returned.
func (b *Broker) awaitTopic(ctx context.Context, topic string, partitions int) error {
	for _, addr := range b.addrs {
		for {
			parts, err := b.partitionsAt(ctx, addr, topic)
			ready := err == nil && len(parts) == partitions
			for _, p := range parts {
				ready = ready && p.Leader.Port != 0
			}
			if ready {
				break
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("topic %q not served by %s: %w (last: %d partitions, %v)", topic, addr, ctx.Err(), len(parts), err)
			case <-time.After(20 * time.Millisecond):
			}
		}
	}
	return nil
}

// partitionsAt is PartitionsAt for one topic.
func (b *Broker) partitionsAt(ctx context.Context, addr, topic string) ([]kafka.Partition, error) {
	return b.PartitionsAt(ctx, addr, topic)
}

// PartitionsAt asks the broker at addr, on a connection of its own and
// within 5 s, for the partitions of topics as that broker sees them (a
// broker that lost touch with the controller reports stale leaders). It
// asks for every topic: naming one would let a broker with
// auto.create.topics.enable create it.
func (b *Broker) PartitionsAt(ctx context.Context, addr string, topics ...string) ([]kafka.Partition, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	conn, err := b.Dialer().DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	if d, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(d)
	}
	all, err := conn.ReadPartitions()
	if err != nil {
		return nil, err
	}
	var out []kafka.Partition
	for _, p := range all {
		if slices.Contains(topics, p.Topic) {
			out = append(out, p)
		}
	}
	return out, nil
}

// EndOffsets returns the high-water mark of every partition of topic. It
// retries for up to 10 s while the brokers answer with a retriable error:
// Apache Kafka's partitions of a topic just created have no leader for a
// moment.
func (b *Broker) EndOffsets(ctx context.Context, topic string) (map[int]int64, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for {
		out, err := b.endOffsets(ctx, topic)
		var kerr kafka.Error
		if err == nil || !errors.As(err, &kerr) || !kerr.Temporary() {
			return out, err
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("%w (%w)", err, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (b *Broker) endOffsets(ctx context.Context, topic string) (map[int]int64, error) {
	client, tr := b.client()
	defer tr.CloseIdleConnections()
	meta, err := client.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{topic}})
	if err != nil {
		return nil, err
	}
	if len(meta.Topics) != 1 {
		return nil, fmt.Errorf("kafkatest: metadata of %q: %v", topic, meta.Topics)
	}
	if err := meta.Topics[0].Error; err != nil {
		return nil, fmt.Errorf("kafkatest: metadata of %q: %w", topic, err)
	}
	req := map[string][]kafka.OffsetRequest{}
	for _, p := range meta.Topics[0].Partitions {
		req[topic] = append(req[topic], kafka.LastOffsetOf(p.ID))
	}
	res, err := client.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: req})
	if err != nil {
		return nil, err
	}
	out := map[int]int64{}
	for _, po := range res.Topics[topic] {
		if po.Error != nil {
			return nil, fmt.Errorf("kafkatest: end offset of %s/%d: %w", topic, po.Partition, po.Error)
		}
		out[po.Partition] = po.LastOffset
	}
	return out, nil
}

var seq atomic.Int64

var unsafeTopicChars = regexp.MustCompile(`[^a-zA-Z0-9._-]+`)

// Topic returns a topic name unique to this test and process, starting with
// prefix (use "completed" for names the persister's default pattern follows).
func Topic(t testing.TB, prefix string) string {
	name := unsafeTopicChars.ReplaceAllString(t.Name(), "_")
	if len(name) > 120 {
		name = name[:120]
	}
	return strings.Join([]string{prefix, name, strconv.FormatInt(seq.Add(1), 10), strconv.Itoa(os.Getpid())}, "-")
}

// errNotDedicated is returned by the node controls on a broker the test
// does not own.
var errNotDedicated = errors.New("kafkatest: node controls need a cluster started by StartApache (the shared and external brokers serve other tests, kfake has no nodes to kill)")
