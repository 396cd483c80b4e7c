package searchtest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-whisk/activationstore/internal/childproc"
)

// spec says what servers to start.
type spec struct {
	version Version
	nodes   int
	heap    string // -Xmx and -Xms
}

// cluster is one or more server JVMs of one distribution, listening on
// 127.0.0.1, each with its own directory under dir.
type cluster struct {
	spec    spec
	home    string // the installed distribution (shared, read only)
	java    string
	dir     string
	name    string // cluster.name: random, so that a probe tells ours from another
	nodes   []*node
	startup time.Duration // from the first JVM's start to every node answering

	closeOnce sync.Once
}

// node is one JVM. A node of a multi-node cluster keeps its ports and its
// data across Kill and Restart.
type node struct {
	c             *cluster
	id            int
	dir           string
	logPath       string // the JVM's standard output and error
	httpPort      int    // 0: the server picks one (single node)
	transportPort int    // 0: likewise

	mu     sync.Mutex
	cmd    *exec.Cmd // nil when never started
	waited bool      // cmd has exited and was reaped
	addr   string    // host:port of HTTP, known once started
}

var errPortTaken = errors.New("a port was taken by another process")

// startCluster resolves the distribution and starts spec.nodes JVMs; it
// returns once every node answers and sees all the others.
func startCluster(ctx context.Context, sp spec) (c *cluster, err error) {
	if sp.nodes < 1 {
		sp.nodes = 1
	}
	if sp.heap == "" {
		sp.heap = defaultHeap
	}
	if err := sp.version.check(); err != nil {
		return nil, err
	}
	if sp.nodes > 1 && sp.version.Major() < 7 && sp.version.Distribution() == "elasticsearch" {
		return nil, fmt.Errorf("searchtest: clusters of %s are not supported (Zen 1 discovery); use OpenSearch or Elasticsearch 7", sp.version)
	}
	java, err := javaPath()
	if err != nil {
		return nil, fmt.Errorf("%w to run %s", err, sp.version)
	}
	h, err := home(ctx, sp.version)
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "searchtest-"+string(sp.version)+"-")
	if err != nil {
		return nil, err
	}
	c = &cluster{spec: sp, home: h, java: java, dir: dir, name: "searchtest-" + randomHex(6)}
	defer func() {
		if err != nil {
			c.close(true)
			err = fmt.Errorf("start %s (%d node(s)) in %s: %w", sp.version, sp.nodes, dir, err)
		}
	}()
	for i := range sp.nodes {
		n := &node{c: c, id: i, dir: filepath.Join(dir, "node-"+strconv.Itoa(i))}
		n.logPath = filepath.Join(n.dir, "server.log")
		for _, sub := range []string{"config", "data", "logs", "tmp"} {
			if err = os.MkdirAll(filepath.Join(n.dir, sub), 0o755); err != nil {
				return nil, err
			}
		}
		if err = os.WriteFile(filepath.Join(n.dir, "config", "log4j2.properties"), []byte(log4j2Properties), 0o644); err != nil {
			return nil, err
		}
		c.nodes = append(c.nodes, n)
	}
	// Fixed ports are picked free and then handed to the JVMs, so another
	// process may take one in between: start again on fresh ports when a
	// node cannot bind.
	for attempt := 1; ; attempt++ {
		err = c.boot(ctx)
		if err == nil || attempt == 3 || !errors.Is(err, errPortTaken) || ctx.Err() != nil {
			return c, err
		}
		c.killAll()
		for _, n := range c.nodes {
			_ = os.RemoveAll(filepath.Join(n.dir, "data"))
		}
	}
}

// boot picks ports, writes every node's configuration and starts them.
func (c *cluster) boot(ctx context.Context) error {
	if err := c.pickPorts(); err != nil {
		return err
	}
	for _, n := range c.nodes {
		if err := os.WriteFile(n.configPath(), []byte(n.config()), 0o644); err != nil {
			return err
		}
	}
	start := time.Now()
	for _, n := range c.nodes {
		if err := n.start(); err != nil {
			return err
		}
	}
	if err := c.waitReady(ctx, 5*time.Minute); err != nil {
		return err
	}
	c.startup = time.Since(start)
	return nil
}

// pickPorts chooses the fixed ports: every port of a multi-node cluster
// (its nodes find each other, and keep their addresses across restarts),
// and the transport port of Elasticsearch 6 (which does not write it to
// its ports file and needs one anyway).
func (c *cluster) pickPorts() error {
	var held []net.Listener
	defer func() {
		for _, l := range held {
			_ = l.Close()
		}
	}()
	pick := func() (int, error) {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		held = append(held, l)
		return l.Addr().(*net.TCPAddr).Port, nil
	}
	var err error
	for _, n := range c.nodes {
		if len(c.nodes) > 1 {
			if n.httpPort, err = pick(); err != nil {
				return err
			}
		}
		if len(c.nodes) > 1 || c.spec.version.Major() < 7 {
			if n.transportPort, err = pick(); err != nil {
				return err
			}
		}
	}
	return nil
}

func (n *node) configPath() string {
	name := "elasticsearch.yml"
	if n.c.spec.version.Distribution() == "opensearch" {
		name = "opensearch.yml"
	}
	return filepath.Join(n.dir, "config", name)
}

// config is the node's elasticsearch.yml / opensearch.yml.
func (n *node) config() string {
	c, v := n.c, n.c.spec.version
	var b strings.Builder
	p := func(k string, val any) { fmt.Fprintf(&b, "%s: %v\n", k, val) }
	b.WriteString("# Generated by internal/searchtest.\n")
	p("cluster.name", c.name)
	p("node.name", n.name())
	p("path.data", strconv.Quote(filepath.Join(n.dir, "data")))
	p("path.logs", strconv.Quote(filepath.Join(n.dir, "logs")))
	p("network.host", "127.0.0.1")
	p("http.port", n.httpPort)
	if v.Major() < 7 && v.Distribution() == "elasticsearch" {
		p("transport.tcp.port", n.transportPort)
	} else {
		p("transport.port", n.transportPort)
	}
	// The ports file tells which ports the server took when given 0.
	p("node.portsfile", true)
	if len(c.nodes) == 1 {
		p("discovery.type", "single-node")
	} else {
		hosts := make([]string, len(c.nodes))
		names := make([]string, len(c.nodes))
		for i, o := range c.nodes {
			hosts[i] = strconv.Quote("127.0.0.1:" + strconv.Itoa(o.transportPort))
			names[i] = strconv.Quote(o.name())
		}
		p("discovery.seed_hosts", "["+strings.Join(hosts, ", ")+"]")
		if v.Distribution() == "opensearch" {
			p("cluster.initial_cluster_manager_nodes", "["+strings.Join(names, ", ")+"]")
		} else {
			p("cluster.initial_master_nodes", "["+strings.Join(names, ", ")+"]")
		}
		// Fault detection: a node that stops answering is removed in
		// seconds rather than half a minute (a killed node's closed
		// connections are noticed at once anyway).
		p("cluster.fault_detection.follower_check.interval", "500ms")
		p("cluster.fault_detection.follower_check.timeout", "2s")
		p("cluster.fault_detection.follower_check.retry_count", 2)
		p("cluster.fault_detection.leader_check.interval", "500ms")
		p("cluster.fault_detection.leader_check.timeout", "2s")
		p("cluster.fault_detection.leader_check.retry_count", 2)
	}
	// The tests' disks may be nearly full: never refuse shards for that.
	p("cluster.routing.allocation.disk.threshold_enabled", false)
	// The shared server holds many tests' indices.
	p("cluster.max_shards_per_node", 100000)
	return b.String()
}

func (n *node) name() string { return "node-" + strconv.Itoa(n.id) }

// log4j2Properties logs to standard output (the node's server.log), at
// INFO, with neither JSON layouts nor rolling files nor deprecation logs.
const log4j2Properties = `# Generated by internal/searchtest.
status = error
appender.console.type = Console
appender.console.name = console
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [%d{ISO8601}][%-5p][%-25c{1.}] [%node_name]%marker %m%n
rootLogger.level = info
rootLogger.appenderRef.console.ref = console
`

// jvmArgs are the arguments of the JVM, without the main class: those the
// distribution's launcher would compute for a small heap, with JNA off
// (its native library is not in the integ-test zip, and without it the
// root check of the start scripts is skipped, which CI, running as root,
// needs).
func (n *node) jvmArgs() []string {
	c, v := n.c, n.c.spec.version
	args := []string{
		"-Xms" + c.spec.heap, "-Xmx" + c.spec.heap, "-Xss1m",
		"-XX:+UseSerialGC", // the smallest footprint; the tests' volumes are small
		// C1 only: half the CPU time to start (measured on OpenSearch
		// 2.19.6: 4-7 s of CPU instead of 10-12 s) and 30 MB less RSS,
		// for slower steady-state code. SEARCHTEST_JAVA_OPTS=
		// -XX:TieredStopAtLevel=4 restores C2.
		"-XX:TieredStopAtLevel=1",
		"-XX:-HeapDumpOnOutOfMemoryError",
		"-XX:ErrorFile=" + filepath.Join(n.dir, "logs", "hs_err_pid%p.log"),
		"-Djava.awt.headless=true",
		"-Dfile.encoding=UTF-8",
		"-Djna.nosys=true", "-Djna.noclasspath=true",
		"-Djna.boot.library.path=" + filepath.Join(n.dir, "no-jna"),
		"-Dio.netty.noUnsafe=true",
		"-Dio.netty.noKeySetOptimization=true",
		"-Dio.netty.recycler.maxCapacityPerThread=0",
		"-Dlog4j.shutdownHookEnabled=false",
		"-Dlog4j2.disable.jmx=true",
		"-Dlog4j2.formatMsgNoLookups=true", // CVE-2021-44228 in 6.8/7.10's log4j
		"-Djava.io.tmpdir=" + filepath.Join(n.dir, "tmp"),
	}
	switch {
	case v.Distribution() == "opensearch" && v.Major() >= 3:
		// OpenSearch 3 replaced the security manager (gone from Java 24)
		// with a Java agent, and runs on Java 21+, without COMPAT locales.
		args = append(args, "-javaagent:"+filepath.Join(c.home, "agent", "opensearch-agent.jar"),
			"-Djava.locale.providers=SPI,CLDR")
	case v.Distribution() == "elasticsearch" && v.Major() < 7:
		args = append(args, "-Djava.security.manager=allow", "-Djava.locale.providers=COMPAT")
	default:
		// Java 18+ refuses a security manager without "allow".
		args = append(args, "-Djava.security.manager=allow", "-Djava.locale.providers=SPI,COMPAT")
	}
	prefix, main := "es", "org.elasticsearch.bootstrap.Elasticsearch"
	if v.Distribution() == "opensearch" {
		prefix, main = "opensearch", "org.opensearch.bootstrap.OpenSearch"
	} else {
		args = append(args, "-Des.distribution.flavor=oss")
	}
	args = append(args, strings.Fields(os.Getenv(EnvJavaOpts))...)
	args = append(args,
		"-D"+prefix+".path.home="+c.home,
		"-D"+prefix+".path.conf="+filepath.Join(n.dir, "config"),
		"-D"+prefix+".distribution.type=zip",
		"-D"+prefix+".bundled_jdk=false",
		"-cp", filepath.Join(c.home, "lib", "*"),
		main)
	return args
}

// start launches the node's JVM, appending its output to its log file.
func (n *node) start() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.running() {
		return fmt.Errorf("node %d is running already", n.id)
	}
	// A killed node leaves its ports file behind.
	_ = os.Remove(n.portsPath())
	n.addr = ""
	if n.httpPort != 0 {
		n.addr = "127.0.0.1:" + strconv.Itoa(n.httpPort)
	}
	log, err := os.OpenFile(n.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer log.Close() // the child has its own descriptor
	fmt.Fprintf(log, "=== searchtest: starting node %d (%s) at %s ===\n", n.id, n.c.spec.version, time.Now().Format(time.RFC3339Nano))
	cmd := exec.Command(n.c.java, n.jvmArgs()...)
	cmd.Dir = n.dir
	cmd.Stdin = nil
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = childproc.SysProcAttr()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start node %d: %w", n.id, err)
	}
	n.cmd, n.waited = cmd, false
	return nil
}

func (n *node) portsPath() string { return filepath.Join(n.dir, "logs", "http.ports") }

// running reports whether the JVM is alive, reaping it when it has
// exited; n.mu must be held. It polls rather than waiting in a goroutine:
// the shared server outlives the tests that check for leaked goroutines.
func (n *node) running() bool {
	if n.cmd == nil || n.waited {
		return false
	}
	if !childproc.Exited(n.cmd.Process) {
		return true
	}
	_ = n.cmd.Wait()
	n.waited = true
	return false
}

// kill sends SIGKILL and waits for the JVM to exit.
func (n *node) kill() {
	n.mu.Lock()
	defer n.mu.Unlock()
	if !n.running() {
		return
	}
	_ = n.cmd.Process.Kill() // SIGKILL: no shutdown hook runs
	_ = n.cmd.Wait()
	n.waited = true
}

// pid is the JVM's process id, 0 when it is not running.
func (n *node) pid() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	if !n.running() {
		return 0
	}
	return n.cmd.Process.Pid
}

// httpAddr is host:port of the node's HTTP, "" before the server wrote its
// ports file.
func (n *node) httpAddr() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.addr == "" {
		b, err := os.ReadFile(n.portsPath())
		if err != nil || !bytes.HasSuffix(b, []byte("\n")) {
			return "" // not written yet, or written half
		}
		n.addr = strings.TrimSpace(strings.SplitN(string(b), "\n", 2)[0])
	}
	return n.addr
}

func (n *node) url() string { return "http://" + n.httpAddr() }

// waitReady returns once every node answers and sees every other.
func (c *cluster) waitReady(ctx context.Context, within time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, within)
	defer cancel()
	for _, n := range c.nodes {
		if err := n.waitReady(ctx, len(c.nodes)); err != nil {
			return err
		}
	}
	return nil
}

// waitReady polls the node's cluster health until it names our cluster
// with want nodes, or fails early with the log of a node that exited.
func (n *node) waitReady(ctx context.Context, want int) error {
	var last error
	for {
		n.mu.Lock()
		started, alive := n.cmd != nil, n.running()
		n.mu.Unlock()
		if !started {
			return fmt.Errorf("node %d is not running", n.id)
		}
		if !alive {
			err := fmt.Errorf("node %d exited during start-up; its log %s ends with:\n%s", n.id, n.logPath, tail(n.logPath, 6<<10))
			if bytes.Contains(readFile(n.logPath), []byte("BindException")) {
				err = fmt.Errorf("%w: %w", errPortTaken, err)
			}
			return err
		}
		if last = n.probe(ctx, want); last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("node %d not ready: %w (last: %v); its log %s ends with:\n%s", n.id, ctx.Err(), last, n.logPath, tail(n.logPath, 6<<10))
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// probe asks the node for the cluster's health. It checks the cluster
// name too: fixed ports were free when picked, and another process's
// server may have bound one since.
func (n *node) probe(ctx context.Context, want int) error {
	addr := n.httpAddr()
	if addr == "" {
		return errors.New("no ports file yet")
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	u := fmt.Sprintf("http://%s/_cluster/health?wait_for_nodes=%d&wait_for_status=yellow&timeout=2s", addr, want)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	resp, err := probeClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	var h struct {
		ClusterName   string `json:"cluster_name"`
		Status        string `json:"status"`
		TimedOut      bool   `json:"timed_out"`
		NumberOfNodes int    `json:"number_of_nodes"`
	}
	if err := json.Unmarshal(body, &h); err != nil {
		return fmt.Errorf("GET %s: %s: %s", u, resp.Status, body)
	}
	if h.ClusterName != n.c.name {
		return fmt.Errorf("%s is served by cluster %q, not this one (%q)", addr, h.ClusterName, n.c.name)
	}
	if h.TimedOut || h.NumberOfNodes < want {
		return fmt.Errorf("cluster health: %s with %d of %d nodes", h.Status, h.NumberOfNodes, want)
	}
	return nil
}

// probeClient never reuses a connection: a probe's server may be killed.
var probeClient = &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}

// killAll kills every node's JVM.
func (c *cluster) killAll() {
	var wg sync.WaitGroup
	for _, n := range c.nodes {
		wg.Go(n.kill)
	}
	wg.Wait()
}

// close kills the cluster and removes its directory, unless keep: then
// the logs stay for whoever reads the failure.
func (c *cluster) close(keep bool) {
	c.closeOnce.Do(func() {
		c.killAll()
		if !keep {
			_ = os.RemoveAll(c.dir)
		}
	})
}

// logs names the nodes' log files.
func (c *cluster) logs() string {
	paths := make([]string, len(c.nodes))
	for i, n := range c.nodes {
		paths[i] = n.logPath
	}
	return strings.Join(paths, " ")
}

// javaPath is SEARCHTEST_JAVA_HOME's bin/java, or java on PATH.
func javaPath() (string, error) {
	if h := os.Getenv(EnvJavaHome); h != "" {
		j := filepath.Join(h, "bin", "java")
		if _, err := os.Stat(j); err != nil {
			return "", fmt.Errorf("searchtest: %s=%s: %w", EnvJavaHome, h, err)
		}
		return j, nil
	}
	j, err := exec.LookPath("java")
	if err != nil {
		return "", errNoJava
	}
	return j, nil
}

var errNoJava = errors.New("searchtest: java is not installed (need Java 17 or newer on PATH, or " + EnvJavaHome + "; or set " + EnvURL + " to an existing server)")

// rssBytes is the resident set size of a process (Linux only).
func rssBytes(pid int) (int64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, err
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			return kb << 10, err
		}
	}
	return 0, errors.New("no VmRSS in /proc/pid/status")
}

// cpuTime is the CPU time a process has used (Linux only), 0 when
// unknown: start-up measured in CPU is less noisy than in wall time on a
// shared machine.
func cpuTime(pid int) time.Duration {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	// The fields after the command name, which is in parentheses.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0
	}
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(utime+stime) * time.Second / 100 // USER_HZ
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func readFile(path string) []byte {
	b, _ := os.ReadFile(path)
	return b
}

// tail returns the last max bytes of a file, from a line start.
func tail(path string, max int64) string {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Sprintf("(cannot read %s: %v)", path, err)
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && st.Size() > max {
		_, _ = f.Seek(st.Size()-max, io.SeekStart)
	}
	b, _ := io.ReadAll(f)
	if i := bytes.IndexByte(b, '\n'); i >= 0 && int64(len(b)) == max {
		b = b[i+1:]
	}
	return string(b)
}
