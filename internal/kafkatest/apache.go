package kafkatest

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-whisk/activationstore/internal/childproc"
	"github.com/segmentio/kafka-go"
)

// security is the kind of listener a client connects to. Every Apache
// node has one listener of each kind, so that one broker serves the tests
// of every kind.
type security uint8

const (
	secPlain    security = iota // PLAINTEXT
	secTLS                      // SSL
	secSCRAM                    // SASL_PLAINTEXT with SCRAM-SHA-512
	secSCRAMTLS                 // SASL_SSL with SCRAM-SHA-512
	numSecurity
)

func (s security) listener() string {
	return [...]string{"PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"}[s]
}

func (s security) String() string {
	return [...]string{"plaintext", "TLS", "SASL/SCRAM-SHA-512", "SASL/SCRAM-SHA-512 over TLS"}[s]
}

// scramUser is the SCRAM user of the Apache brokers and of SASL kfake
// brokers; the password is random per broker.
const scramUser = "kafkatest"

// apacheSpec says what Apache Kafka cluster to start.
type apacheSpec struct {
	version string
	nodes   int
	heap    string // -Xmx
}

// zooKeeper reports whether the version runs with ZooKeeper rather than
// KRaft: every release before 3.5. KRaft came in 2.8 as early access,
// was production-ready in 3.3, and takes SCRAM users at format time
// (KIP-900) from 3.5; ZooKeeper mode went in 4.0.
func (s apacheSpec) zooKeeper() bool {
	var major, minor int
	if _, err := fmt.Sscanf(s.version, "%d.%d", &major, &minor); err != nil {
		return false // versionPattern has vetted it; unreachable
	}
	return major < 3 || major == 3 && minor < 5
}

// mode names the cluster's metadata mode for logs.
func (s apacheSpec) mode() string {
	if s.zooKeeper() {
		return "ZooKeeper"
	}
	return "KRaft"
}

// zkSessionTimeout is the brokers' ZooKeeper session timeout: how long a
// SIGKILLed broker stays registered (and, if it was the controller,
// controller). Kafka's default is 18 s; 6 s keeps failover tests short,
// as broker.session.timeout.ms does under KRaft, while surviving a busy
// machine's pauses.
const zkSessionTimeout = 6 * time.Second

// apacheCluster is a running Apache Kafka cluster listening on 127.0.0.1:
// combined broker+controller nodes (KRaft), or brokers and one
// ZooKeeper server (versions before 3.5).
type apacheCluster struct {
	spec      apacheSpec
	dir       string
	java      string
	classpath string
	clusterID string
	certs     *testCerts
	password  string
	nodes     []*apacheNode
	zk        *apacheNode   // the ZooKeeper server; nil under KRaft
	formatted time.Duration // formatting the storage, part of startup
	startup   time.Duration // from formatting to a cluster answering Metadata

	closeOnce sync.Once
}

// apacheNode is one node: a JVM with its own data directory and log file
// that keeps its ports across restarts. The ZooKeeper server is one too,
// with id -1 and its client port in ports[0].
type apacheNode struct {
	c     *apacheCluster
	id    int // node.id (broker.id); also its index
	dir   string
	ports [numSecurity + 1]int // client listeners by security, then CONTROLLER
	proc  childproc.Process
}

const controllerPort = int(numSecurity)

// startApache resolves the jars, formats the nodes' storage and starts the
// cluster; it returns once every node answers Metadata listing all nodes.
func startApache(ctx context.Context, spec apacheSpec) (c *apacheCluster, err error) {
	if spec.nodes < 1 {
		spec.nodes = 1
	}
	if spec.heap == "" {
		spec.heap = defaultHeap
	}
	java, err := exec.LookPath("java")
	if err != nil {
		return nil, errNoJava
	}
	lib, err := kafkaJars(ctx, spec.version)
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "kafkatest-apache-"+spec.version+"-")
	if err != nil {
		return nil, err
	}
	c = &apacheCluster{
		spec:      spec,
		dir:       dir,
		java:      java,
		classpath: filepath.Join(lib, "*"),
		clusterID: randomClusterID(),
		password:  rand.Text(),
	}
	defer func() {
		if err != nil {
			c.close(true)
			err = fmt.Errorf("start Apache Kafka %s (%d node(s)) in %s: %w", spec.version, spec.nodes, dir, err)
		}
	}()
	if c.certs, err = newTestCerts(); err != nil {
		return nil, err
	}
	if spec.zooKeeper() {
		err = c.certs.writeEncryptedKeyStore(c.keyStorePath(), c.password)
	} else {
		err = c.certs.writeKeyStore(c.keyStorePath())
	}
	if err != nil {
		return nil, err
	}
	for i := range spec.nodes {
		n := c.newNode(i, "node-"+strconv.Itoa(i), "kafka.log")
		if err = os.MkdirAll(n.dir, 0o755); err != nil {
			return nil, err
		}
		c.nodes = append(c.nodes, n)
	}
	if spec.zooKeeper() {
		c.zk = c.newNode(-1, "zookeeper", "zookeeper.log")
		if err = os.MkdirAll(c.zk.dir, 0o755); err != nil {
			return nil, err
		}
	}
	err = childproc.RetryPortTaken(ctx, func() error { return c.boot(ctx) }, func() {
		c.killAll()
		for _, n := range c.allNodes() {
			_ = os.RemoveAll(filepath.Join(n.dir, "data"))
		}
	})
	return c, err
}

// newNode is node id (-1: the ZooKeeper server) in folder sub, its JVM's
// output in log.
func (c *apacheCluster) newNode(id int, sub, log string) *apacheNode {
	n := &apacheNode{c: c, id: id, dir: filepath.Join(c.dir, sub)}
	n.proc = childproc.Process{
		Name: n.String(),
		Log:  filepath.Join(n.dir, log),
		Command: func() *exec.Cmd {
			args := append(c.jvmArgs(c.spec.heap), "kafka.Kafka", n.propertiesPath())
			if n.id < 0 {
				// The ZooKeeper server from the jar Kafka depends on.
				args = append(c.jvmArgs("64m"), "-Dzookeeper.admin.enableServer=false",
					"org.apache.zookeeper.server.ZooKeeperServerMain", n.propertiesPath())
			}
			cmd := exec.Command(c.java, args...)
			cmd.Dir = n.dir
			return cmd
		},
	}
	return n
}

// allNodes are the brokers and, under ZooKeeper, the ZooKeeper server.
func (c *apacheCluster) allNodes() []*apacheNode {
	if c.zk == nil {
		return c.nodes
	}
	return append(slices.Clone(c.nodes), c.zk)
}

// boot picks ports, formats every node and starts them all.
func (c *apacheCluster) boot(ctx context.Context) error {
	if err := c.pickPorts(); err != nil {
		return err
	}
	for _, n := range c.allNodes() {
		if err := os.WriteFile(n.propertiesPath(), []byte(n.properties()), 0o644); err != nil {
			return err
		}
	}
	if c.zk != nil {
		return c.bootZooKeeper(ctx)
	}
	start := time.Now()
	var wg sync.WaitGroup
	errs := make([]error, len(c.nodes))
	for i, n := range c.nodes {
		wg.Go(func() { errs[i] = n.format(ctx) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	c.formatted = time.Since(start)
	for _, n := range c.nodes {
		if err := n.proc.Start(); err != nil {
			return err
		}
	}
	if err := c.waitReady(ctx, 3*time.Minute); err != nil {
		return err
	}
	c.startup = time.Since(start)
	return nil
}

// pickPorts picks free loopback ports for every listener of every node.
func (c *apacheCluster) pickPorts() error {
	nodes := c.allNodes()
	ports, err := childproc.FreePorts(len(nodes) * len(nodes[0].ports))
	if err != nil {
		return err
	}
	for _, n := range nodes {
		ports = ports[copy(n.ports[:], ports):]
	}
	return nil
}

func (c *apacheCluster) keyStorePath() string { return filepath.Join(c.dir, "server.pem") }

// addrs are the nodes' addresses on the listeners of one security kind.
func (c *apacheCluster) addrs(s security) []string {
	out := make([]string, len(c.nodes))
	for i, n := range c.nodes {
		out[i] = n.addr(s)
	}
	return out
}

func (n *apacheNode) addr(s security) string { return "127.0.0.1:" + strconv.Itoa(n.ports[s]) }

func (n *apacheNode) propertiesPath() string {
	if n.id < 0 {
		return filepath.Join(n.dir, "zoo.cfg")
	}
	return filepath.Join(n.dir, "server.properties")
}

// properties is the node's server.properties: KRaft combined mode or a
// ZooKeeper broker, one listener per security kind, and settings for fast
// start-up and short test timeouts. For the ZooKeeper server, its zoo.cfg.
func (n *apacheNode) properties() string {
	c := n.c
	var b strings.Builder
	p := func(k string, v any) { fmt.Fprintf(&b, "%s=%v\n", k, v) }
	b.WriteString("# Generated by internal/kafkatest.\n")
	if n.id < 0 {
		// A standalone ZooKeeper server. A short tick allows the brokers'
		// short sessions (between 2 and 20 ticks).
		p("dataDir", filepath.ToSlash(filepath.Join(n.dir, "data")))
		p("clientPort", n.ports[0])
		p("clientPortAddress", "127.0.0.1")
		p("tickTime", 500)
		p("maxClientCnxns", 0)
		p("admin.enableServer", false)
		return b.String()
	}
	var listeners, advertised []string
	for s := range numSecurity {
		l := s.listener() + "://" + n.addr(s)
		listeners = append(listeners, l)
		advertised = append(advertised, l)
	}
	p("inter.broker.listener.name", "PLAINTEXT")
	if c.zk != nil {
		p("broker.id", n.id)
		p("zookeeper.connect", c.zk.zkAddr())
		p("zookeeper.session.timeout.ms", zkSessionTimeout.Milliseconds())
		p("zookeeper.connection.timeout.ms", 30_000)
		p("listener.security.protocol.map", "PLAINTEXT:PLAINTEXT,SSL:SSL,SASL_PLAINTEXT:SASL_PLAINTEXT,SASL_SSL:SASL_SSL")
	} else {
		p("process.roles", "broker,controller")
		p("node.id", n.id)
		voters := make([]string, len(c.nodes))
		for i, o := range c.nodes {
			voters[i] = fmt.Sprintf("%d@127.0.0.1:%d", o.id, o.ports[controllerPort])
		}
		p("controller.quorum.voters", strings.Join(voters, ","))
		p("controller.listener.names", "CONTROLLER")
		listeners = append(listeners, fmt.Sprintf("CONTROLLER://127.0.0.1:%d", n.ports[controllerPort]))
		p("listener.security.protocol.map", "PLAINTEXT:PLAINTEXT,SSL:SSL,SASL_PLAINTEXT:SASL_PLAINTEXT,SASL_SSL:SASL_SSL,CONTROLLER:PLAINTEXT")
	}
	p("listeners", strings.Join(listeners, ","))
	p("advertised.listeners", strings.Join(advertised, ","))
	p("log.dirs", filepath.ToSlash(filepath.Join(n.dir, "data")))

	// TLS: a PEM key store (unencrypted key and chain); clients are not
	// authenticated by certificate.
	p("ssl.keystore.type", "PEM")
	p("ssl.keystore.location", filepath.ToSlash(c.keyStorePath()))
	if c.zk != nil {
		p("ssl.key.password", c.password) // see writeEncryptedKeyStore
	}
	// SASL: SCRAM-SHA-512 only; the user is added when formatting
	// (KRaft) or in ZooKeeper before the brokers start.
	p("sasl.enabled.mechanisms", "SCRAM-SHA-512")
	for _, l := range []string{"sasl_plaintext", "sasl_ssl"} {
		p("listener.name."+l+".scram-sha-512.sasl.jaas.config", "org.apache.kafka.common.security.scram.ScramLoginModule required;")
	}

	// Replication: everything on every node of a cluster, and acks=all
	// needing two replicas, so that a cluster survives the loss of one
	// node without losing acknowledged records.
	rf := min(len(c.nodes), 3)
	minISR := min(len(c.nodes), 2)
	p("num.partitions", 1)
	p("default.replication.factor", rf)
	p("min.insync.replicas", minISR)
	p("offsets.topic.replication.factor", rf)
	p("offsets.topic.num.partitions", 4)
	p("transaction.state.log.replication.factor", rf)
	p("transaction.state.log.min.isr", minISR)
	p("transaction.state.log.num.partitions", 4)
	p("share.coordinator.state.topic.replication.factor", rf)
	p("share.coordinator.state.topic.min.isr", minISR)

	// Groups: no initial rebalance delay, and short sessions allowed so
	// that tests replace a stopped member in seconds.
	p("group.initial.rebalance.delay.ms", 0)
	p("group.min.session.timeout.ms", 100)

	// A small footprint: few threads, a small cleaner buffer (the default
	// 128 MiB would not fit the heap), and retention applied within a
	// second so that tests of records lost to retention run fast.
	p("num.network.threads", 2)
	p("num.io.threads", 4)
	p("background.threads", 2)
	p("num.replica.fetchers", 1)
	p("num.recovery.threads.per.data.dir", 1)
	p("log.cleaner.threads", 1)
	p("log.cleaner.dedupe.buffer.size", 8<<20)
	p("log.retention.check.interval.ms", 1000)
	p("log.initial.task.delay.ms", 1000) // 30 s by default: no retention before that
	if len(c.nodes) > 1 {
		// A killed node is fenced, and leaves the ISRs, within seconds
		// (under ZooKeeper when its session expires: above).
		if c.zk == nil {
			p("broker.heartbeat.interval.ms", 500)
			p("broker.session.timeout.ms", 4000)
		}
		p("replica.lag.time.max.ms", 8000)
	}
	return b.String()
}

// jvmArgs are the JVM options of every process: a modest heap, and a
// compiler and collector chosen for start-up time and footprint over peak
// throughput.
func (c *apacheCluster) jvmArgs(heap string) []string {
	return []string{
		"-Xms32m", "-Xmx" + heap,
		"-XX:+UseSerialGC",
		"-XX:TieredStopAtLevel=1",
		"-XX:+ExitOnOutOfMemoryError",
		"-XX:-UsePerfData",
		"-Djava.awt.headless=true",
		"-Dorg.slf4j.simpleLogger.showDateTime=true",
		"-Dorg.slf4j.simpleLogger.dateTimeFormat=HH:mm:ss.SSS",
		"-Dorg.slf4j.simpleLogger.defaultLogLevel=info",
		"-Dorg.slf4j.simpleLogger.log.org.apache.kafka.common.config.AbstractConfig=warn",
		"-Dorg.slf4j.simpleLogger.log.kafka.server.KafkaConfig=warn",
		"-cp", c.classpath,
	}
}

// format runs Kafka's StorageTool on the node's data directory, adding the
// SCRAM user.
func (n *apacheNode) format(ctx context.Context) error {
	c := n.c
	args := append(c.jvmArgs("256m"), "kafka.tools.StorageTool", "format",
		"--cluster-id", c.clusterID, "--config", n.propertiesPath(),
		"--add-scram", fmt.Sprintf("SCRAM-SHA-512=[name=%s,password=%s]", scramUser, c.password))
	cmd := exec.CommandContext(ctx, c.java, args...)
	cmd.Dir = n.dir
	cmd.SysProcAttr = childproc.SysProcAttr()
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("format the storage of node %d (kafka.tools.StorageTool): %w\n%s", n.id, err, redactSecret(out, c.password))
	}
	return nil
}

// waitReady returns once every node answers Metadata listing every node,
// or fails early with the log of a node that exited.
func (c *apacheCluster) waitReady(ctx context.Context, within time.Duration) error {
	return childproc.WaitAll(ctx, within, len(c.nodes), func(ctx context.Context, i int) error {
		return c.nodes[i].waitReady(ctx, len(c.nodes))
	})
}

// waitReady polls the node's PLAINTEXT listener until its Metadata lists
// want live brokers, itself included.
func (n *apacheNode) waitReady(ctx context.Context, want int) error {
	return n.proc.WaitReady(ctx, "Address already in use", 100*time.Millisecond, func(ctx context.Context) error { return n.probe(ctx, want) })
}

// probe asks for the cluster metadata on a transport of its own. It checks
// the cluster id too: the ports were free when picked, and another
// process's broker may have bound one since, which would otherwise pass
// for this node until it fails to bind.
func (n *apacheNode) probe(ctx context.Context, want int) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	tr := &kafka.Transport{DialTimeout: time.Second}
	defer tr.CloseIdleConnections()
	md, err := (&kafka.Client{Addr: kafka.TCP(n.addr(secPlain)), Transport: tr}).Metadata(ctx, &kafka.MetadataRequest{})
	if err != nil {
		return err
	}
	cluster := n.c.clusterID
	if n.c.zk != nil {
		// Under ZooKeeper the broker makes the cluster id, and writes it
		// to its data directory before it listens.
		if cluster = n.metaClusterID(); cluster == "" {
			return fmt.Errorf("%s answers, and node %d has not written its meta.properties yet", n.addr(secPlain), n.id)
		}
	}
	if md.ClusterID != cluster {
		return fmt.Errorf("%s is served by cluster %q, not this one (%q)", n.addr(secPlain), md.ClusterID, cluster)
	}
	self := false
	for _, b := range md.Brokers {
		self = self || b.ID == n.id
	}
	if len(md.Brokers) < want || !self {
		return fmt.Errorf("metadata lists %d of %d brokers (itself: %v)", len(md.Brokers), want, self)
	}
	return nil
}

// metaClusterID is the cluster.id in the node's meta.properties, "" until
// the broker has written it.
func (n *apacheNode) metaClusterID() string {
	b, _ := os.ReadFile(filepath.Join(n.dir, "data", "meta.properties"))
	for line := range strings.SplitSeq(string(b), "\n") {
		if id, ok := strings.CutPrefix(strings.TrimSpace(line), "cluster.id="); ok {
			return id
		}
	}
	return ""
}

func (n *apacheNode) String() string {
	if n.id < 0 {
		return "the ZooKeeper server"
	}
	return "node " + strconv.Itoa(n.id)
}

// killAll kills every node's JVM, then the ZooKeeper server's.
func (c *apacheCluster) killAll() {
	var wg sync.WaitGroup
	for _, n := range c.nodes {
		wg.Go(n.proc.Kill)
	}
	wg.Wait()
	if c.zk != nil {
		c.zk.proc.Kill()
	}
}

// close kills the cluster and removes its directory, unless keep: then
// the logs stay for whoever reads the failure.
func (c *apacheCluster) close(keep bool) {
	c.closeOnce.Do(func() {
		c.killAll()
		if !keep {
			_ = os.RemoveAll(c.dir)
		}
	})
}

// logs names the nodes' log files.
func (c *apacheCluster) logs() string {
	var paths []string
	for _, n := range c.allNodes() {
		paths = append(paths, n.proc.Log)
	}
	return strings.Join(paths, " ")
}

// randomClusterID is a KRaft cluster id: 16 random bytes, base64url, not
// starting with "-" (as Kafka's own Uuid.randomUuid, so that command-line
// parsers do not take it for an option).
func randomClusterID() string {
	for {
		var b [16]byte
		_, _ = rand.Read(b[:])
		if id := base64.RawURLEncoding.EncodeToString(b[:]); id[0] != '-' {
			return id
		}
	}
}

func redactSecret(b []byte, secret string) string {
	return strings.ReplaceAll(string(b), secret, "<redacted>")
}
