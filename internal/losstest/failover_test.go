package losstest

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/go-whisk/activationstore/internal/kafkatest"
	"github.com/go-whisk/activationstore/internal/logtest"
	"github.com/go-whisk/activationstore/internal/testvolume"
	"github.com/go-whisk/activationstore/kafkastore"
	"github.com/go-whisk/activationstore/primary/memory"
	"github.com/go-whisk/activationstore/store"
)

// failoverFault is one fault of TestFailoverWithoutRetries and its figures.
type failoverFault struct {
	name string
	pick func(ctx context.Context) (int, error) // the node to kill

	victim int
	led    map[string][]int // partitions the victim led, by topic
	killed time.Time
	// Since the kill: the victim's partitions all led by other nodes
	// (election), the victim out of every ISR, both (recovered); a new
	// quorum leader (controller faults); the group committed past the
	// end offsets seen at the election (lag 0).
	elected, isrShrunk, recovered, controller, lagZero time.Duration
	restarted                                          time.Time
	restart                                            time.Duration
	ended                                              time.Time // restarted node in sync
	probeLongest                                       time.Duration
	multiLongest, singleLongest                        time.Duration
	electionLongest                                    time.Duration // of the calls that overlapped [killed, killed+recovered]
	multiCalls, singleCalls, errs                      int
	worstExcess                                        map[string]storeCall // by topic: the call that waited longest past max(begin, recovered)
	load                                               string
}

// excess is how long c waited past the later of its start and the
// cluster's recovery from f.
func (f *failoverFault) excess(c storeCall) time.Duration {
	from := f.killed.Add(f.recovered)
	if c.begin.After(from) {
		from = c.begin
	}
	return c.begin.Add(c.took).Sub(from)
}

// describe tells the worst call of each topic.
func (f *failoverFault) describe(names map[string]string) string {
	var out []string
	for topic, c := range f.worstExcess {
		out = append(out, fmt.Sprintf("%s %v (a call of %v begun %v after the kill)", names[topic],
			f.excess(c).Round(time.Millisecond), c.took.Round(time.Millisecond), c.begin.Sub(f.killed).Round(time.Millisecond)))
	}
	slices.Sort(out)
	return strings.Join(out, ", ")
}

// storeCall is one Store of a caller.
type storeCall struct {
	begin time.Time
	took  time.Duration
	err   error
}

// A three-node Apache Kafka cluster (replication factor 3,
// min.insync.replicas=2) loses, one after the other, the leader of the
// busiest partition of an 8-partition topic, the active KRaft controller
// (combined mode: a broker too), and the leader of a single-partition
// topic (the controllers' completed<N>); each node is SIGKILLed, and
// restarted once the cluster has recovered (the leader only, below the
// full volume of internal/testvolume). Callers Store to both topics
// through Stores with default options and do NOT retry: every Store error
// fails the test. Two persisters drain both topics into CouchDB.
//
// Asserted: no Store error; no Store waits more than 2 s past the later of
// its start and the moment the cluster could acknowledge acks=all writes
// again (the victim's partitions have new leaders and the victim is out of
// every ISR: until then every acks=all producer waits, since the victim is
// a follower of every other partition; the raw producer this test runs
// beside the Stores shows it); every record in CouchDB once; the group
// committing past the end offsets seen at the election (its lag then back
// to 0) within 5 s of the election. Both timing bounds grow with the load
// of a machine busier than two runnable threads per CPU (loadSlack).
func TestFailoverWithoutRetries(t *testing.T) { runFailover(t, false) }

// TestFailoverWithoutRetries with a spool under each Store (WithSpool, a
// directory per Store): the same faults, callers and persisters, and the
// same assertions, and beyond them: no Store call that overlaps an
// election (from the kill until the victim's partitions are led elsewhere
// and it is out of every ISR, seconds in which every acks=all producer
// waits) takes more than 50 ms, a local group commit's time: the
// publisher, not the caller, waits out the election. Through the rest of
// the fault, while the victim restarts and its JVM recovers its logs on
// the same disk, a call may also wait for the disk: none takes more than
// 50 ms plus twice the slowest fdatasync of the run (a call waits for the
// group commit in progress, then its own). The 50 ms grow with the load
// as the other bounds (loadSlack).
func TestFailoverWithSpool(t *testing.T) { runFailover(t, true) }

// runFailover runs TestFailoverWithoutRetries, its Stores spooled or not.
func runFailover(t *testing.T, spooled bool) {
	const (
		partitions    = 8
		multiCallers  = 16
		singleCallers = 4
		pace          = 5 * time.Millisecond // each caller's pause between Stores
		baseExcess    = 2 * time.Second      // on a quiet machine
		baseLagZero   = 5 * time.Second
		// A spooled Store's longest call through a fault: a group commit's
		// write and fdatasync, on a quiet machine.
		baseSpoolCall = 50 * time.Millisecond
	)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	b := kafkatest.StartApache(t, kafkatest.WithNodes(3))
	multi := kafkatest.Topic(t, "completed-others")
	single := kafkatest.Topic(t, "completed0")
	group := kafkatest.Topic(t, "group")
	// The raw producer's topic: three partitions, one per node.
	probe := kafkatest.Topic(t, "probe")
	b.CreateTopic(t, probe, 3, nil)
	primary, couchURL, db := couchPrimary(ctx, t)

	var storeLog, persisterLog logtest.Buffer
	defer func() {
		if t.Failed() {
			t.Logf("Stores' log (tail):\n%s\npersisters' log (tail):\n%s", storeLog.Tail(60), persisterLog.Tail(60))
		}
	}()
	// Default options but for the topic and how to create it, and the
	// spool.
	newStore := func(topic string, parts int) *kafkastore.Store {
		opts := []kafkastore.Option{
			kafkastore.WithBrokers(b.Addrs()...),
			kafkastore.WithTopic(topic),
			kafkastore.WithTopicPartitions(parts),
			kafkastore.WithTopicReplicationFactor(3),
			kafkastore.WithLogger(slog.New(slog.NewTextHandler(&storeLog, &slog.HandlerOptions{Level: slog.LevelWarn})).With("topic", topic)),
		}
		if spooled {
			opts = append(opts, kafkastore.WithSpool(t.TempDir()))
			// A spooled Store creates its topic on its first publish:
			// the cluster's defaults are the same (3 replicas, 2 in sync).
			b.CreateTopic(t, topic, parts, nil)
		}
		s, err := kafkastore.New(memory.New(), opts...)
		if err != nil {
			t.Fatalf("kafkastore.New(%s): %v", topic, err)
		}
		checkReplication(ctx, t, b, topic, 3, "2")
		return s
	}
	sMulti, sSingle := newStore(multi, partitions), newStore(single, 1)
	storesClosed := false
	defer func() {
		if !storesClosed {
			_ = sMulti.Close()
			_ = sSingle.Close()
		}
	}()

	pattern := regexp.MustCompile("^(" + regexp.QuoteMeta(multi) + "|" + regexp.QuoteMeta(single) + ")$")
	members := startChaosMembers(t, primary, b.Addrs(), group, pattern, &persisterLog, "failover-a", "failover-b")

	// The callers: each Stores the next activation once, never again.
	run := NewRun()
	var (
		next    atomic.Int64
		stop    atomic.Bool
		callsMu sync.Mutex
		calls   = map[string][]storeCall{}
		wg      sync.WaitGroup
		stored  []int // activation indexes acknowledged
	)
	caller := func(s *kafkastore.Store, topic string) {
		var mine []storeCall
		var acked []int
		for !stop.Load() {
			i := int(next.Add(1) - 1)
			begin := time.Now()
			_, err := s.Store(ctx, Activation(run, i), store.UserContext{TransactionID: "failover"})
			mine = append(mine, storeCall{begin: begin, took: time.Since(begin), err: err})
			if err == nil {
				acked = append(acked, i)
			}
			time.Sleep(pace)
		}
		callsMu.Lock()
		calls[topic] = append(calls[topic], mine...)
		stored = append(stored, acked...)
		callsMu.Unlock()
	}
	began := time.Now()
	for range multiCallers {
		wg.Go(func() { caller(sMulti, multi) })
	}
	for range singleCallers {
		wg.Go(func() { caller(sSingle, single) })
	}
	defer func() { stop.Store(true); wg.Wait() }()

	live := func(victim int) string { return b.NodeAddr((victim + 1) % b.Nodes()) }
	faults := []*failoverFault{
		{name: "SIGKILL of the busiest partition's leader", pick: func(ctx context.Context) (int, error) {
			ends, err := b.EndOffsets(ctx, multi)
			if err != nil {
				return 0, err
			}
			busiest := 0
			for p, end := range ends {
				if end > ends[busiest] {
					busiest = p
				}
			}
			return b.Leader(ctx, multi, busiest)
		}},
		{name: "SIGKILL of the active KRaft controller", pick: b.ActiveController},
		{name: "SIGKILL of the single-partition topic's leader", pick: func(ctx context.Context) (int, error) {
			return b.Leader(ctx, single, 0)
		}},
	}
	// The leader's loss at every volume; the controller's and the single
	// partition's at full volume (half a minute each).
	faults = faults[:testvolume.Pick(1, 1, len(faults))]
	topics := map[string]int{multi: partitions, single: 1}
	for k, f := range faults {
		time.Sleep(3 * time.Second) // steady load before the fault
		var err error
		if f.victim, err = f.pick(ctx); err != nil {
			t.Fatalf("fault %d (%s): pick the node: %v", k+1, f.name, err)
		}
		f.led = map[string][]int{}
		for topic, n := range topics {
			for p := range n {
				l, err := b.Leader(ctx, topic, p)
				if err != nil {
					t.Fatalf("leader of %s/%d: %v", topic, p, err)
				}
				if l == f.victim {
					f.led[topic] = append(f.led[topic], p)
				}
			}
		}
		probePart := -1
		for p := range 3 {
			if l, err := b.Leader(ctx, probe, p); err == nil && l != f.victim {
				probePart = p
				break
			}
		}
		stopProbe := rawProbe(t, b, probe, probePart, &f.probeLongest)
		f.load = loadAverage()

		if err := b.Kill(f.victim); err != nil {
			t.Fatal(err)
		}
		f.killed = time.Now()
		measureRecovery(ctx, t, b, f, topics)
		f.lagZero = lagZeroAfter(ctx, t, b, group, topics, live(f.victim), f)

		f.restarted = time.Now()
		if err := b.Restart(ctx, f.victim); err != nil {
			t.Fatalf("restart node %d: %v", f.victim, err)
		}
		f.restart = time.Since(f.restarted)
		for topic := range topics {
			if err := b.WaitInSync(ctx, topic); err != nil {
				t.Fatalf("after restarting node %d: %v", f.victim, err)
			}
		}
		time.Sleep(time.Second) // Stores through the rejoined node
		f.ended = time.Now()
		stopProbe()
	}
	stop.Store(true)
	wg.Wait()
	total := int(next.Load())

	if spooled {
		waitFor(t, 2*time.Minute, "the spools to drain into Kafka", func() bool {
			return sMulti.Stats().Spool.Records == 0 && sSingle.Stats().Spool.Records == 0
		})
	}
	waitFor(t, 3*time.Minute, "the group to commit to the end of both topics", func() bool {
		for topic := range topics {
			lag, err := groupLagAt(ctx, b, live(0), group, topic)
			if err != nil || lag != 0 {
				return false
			}
		}
		return true
	})
	drained := time.Since(began)
	var persisted, conflicts int64
	for _, m := range members {
		m.stop(t)
		st := m.p.Stats()
		persisted += st.Persisted
		conflicts += st.Conflicts
	}
	storesClosed = true
	for _, s := range []*kafkastore.Store{sMulti, sSingle} {
		if err := s.Close(); err != nil {
			t.Errorf("Store.Close: %v", err)
		}
	}
	stMulti, stSingle := sMulti.Stats(), sSingle.Stats()

	// Per fault: the calls that overlapped it.
	var errSamples []string
	allErrs := 0
	for topic, cs := range calls {
		for _, c := range cs {
			if c.err != nil {
				allErrs++
				if len(errSamples) < 5 {
					errSamples = append(errSamples, fmt.Sprintf("%s after %v (began %v in): %v", topic, c.took.Round(time.Millisecond), c.begin.Sub(began).Round(time.Millisecond), c.err))
				}
			}
			for _, f := range faults {
				if c.begin.Add(c.took).Before(f.killed) || c.begin.After(f.ended) {
					continue
				}
				if c.err != nil {
					f.errs++
				}
				if !c.begin.After(f.killed.Add(f.recovered)) {
					f.electionLongest = max(f.electionLongest, c.took)
				}
				if topic == multi {
					f.multiCalls++
					f.multiLongest = max(f.multiLongest, c.took)
				} else {
					f.singleCalls++
					f.singleLongest = max(f.singleLongest, c.took)
				}
				if f.worstExcess == nil {
					f.worstExcess = map[string]storeCall{}
				}
				if w, ok := f.worstExcess[topic]; !ok || f.excess(c) > f.excess(w) {
					f.worstExcess[topic] = c
				}
			}
		}
	}
	if allErrs > 0 {
		t.Errorf("%d Store errors with callers that do not retry (want 0); first: %s", allErrs, strings.Join(errSamples, "; "))
	}
	if stMulti.PublishFailures+stSingle.PublishFailures != 0 || stMulti.SpoolFailures+stSingle.SpoolFailures != 0 {
		t.Errorf("Stats.PublishFailures: %d + %d, SpoolFailures: %d + %d; want 0", stMulti.PublishFailures, stSingle.PublishFailures, stMulti.SpoolFailures, stSingle.SpoolFailures)
	}

	// Nothing lost: every acknowledged record is in CouchDB once.
	ids := listDocIDs(ctx, t, couchURL, db, time.Minute)
	present := map[int]int{}
	for _, id := range ids {
		if _, aid, ok := strings.Cut(id, "/"); ok {
			if r, i, ok := Index(aid); ok && r == run {
				present[i]++
			}
		}
	}
	var lost []int
	for _, i := range stored {
		if present[i] != 1 && len(lost) < 10 {
			lost = append(lost, i)
		}
	}
	if len(lost) > 0 {
		t.Errorf("acknowledged records not in CouchDB exactly once (first %d): %v", len(lost), lost)
	}
	if len(stored) != total || len(present) != total {
		t.Errorf("%d activations handed out, %d acknowledged, %d in CouchDB; want all", total, len(stored), len(present))
	}
	if persisted != int64(total) {
		t.Errorf("sum of Persisted = %d, want %d: each document created once", persisted, total)
	}

	// The bounds hold on a machine with time to spare. On one busier than
	// two runnable threads per core (1-minute load average), the JVMs
	// and callers wait for a CPU too: the bounds grow in proportion,
	// and the summary says so.
	slack := loadSlack()
	scale := func(d time.Duration) time.Duration { return time.Duration(float64(d) * slack) }
	maxExcess, maxLagZero, maxSpoolCall := scale(baseExcess), scale(baseLagZero), scale(baseSpoolCall)
	// A call waits for the group commit in progress, then its own.
	slowestSync := max(stMulti.Spool.SyncLatency.Max, stSingle.Spool.SyncLatency.Max)
	names := map[string]string{multi: fmt.Sprintf("%d-partition topic", partitions), single: "single-partition topic"}
	var report []string
	for k, f := range faults {
		report = append(report, fmt.Sprintf("fault %d [%s: node %d, it led %v; load %s]: Store errors %d; longest Store call %v on %d-partition topic (%d calls), %v on single-partition topic (%d calls); "+
			"longest Store call overlapping the election %v; raw acks=all producer's longest call %v; election (victim's partitions all led elsewhere) %v, victim out of every ISR %v, new quorum leader %v; "+
			"longest wait past max(start, recovery at %v): %s; group past the election's end offsets (lag 0) %v after the election; restart took %v",
			k+1, f.name, f.victim, f.led, f.load, f.errs, f.multiLongest.Round(time.Millisecond), partitions, f.multiCalls, f.singleLongest.Round(time.Millisecond), f.singleCalls,
			f.electionLongest.Round(time.Millisecond), f.probeLongest.Round(time.Millisecond), f.elected.Round(time.Millisecond), f.isrShrunk.Round(time.Millisecond), fmtDur(f.controller),
			f.recovered.Round(time.Millisecond), f.describe(names), fmtDur(f.lagZero-f.elected), f.restart.Round(time.Millisecond)))
		for topic, c := range f.worstExcess {
			if f.excess(c) > maxExcess {
				t.Errorf("fault %d (%s): a Store to the %s waited %v past the later of its start and the cluster's recovery (%v after the kill), want at most %v",
					k+1, f.name, names[topic], f.excess(c).Round(time.Millisecond), f.recovered.Round(time.Millisecond), maxExcess)
			}
		}
		if spooled && f.electionLongest > maxSpoolCall {
			t.Errorf("fault %d (%s): a spooled Store overlapping the election (the %v from the kill to the victim's partitions led elsewhere and out of every ISR) took %v; want none over %v",
				k+1, f.name, f.recovered.Round(time.Millisecond), f.electionLongest.Round(time.Millisecond), maxSpoolCall)
		}
		if longest := max(f.multiLongest, f.singleLongest); spooled && longest > maxSpoolCall+2*slowestSync {
			t.Errorf("fault %d (%s): a spooled Store took %v (longest on the %s %v, on the %s %v); want none over %v plus twice the slowest fdatasync (%v): the disk's time, not Kafka's",
				k+1, f.name, longest.Round(time.Millisecond), names[multi], f.multiLongest.Round(time.Millisecond), names[single], f.singleLongest.Round(time.Millisecond), maxSpoolCall, slowestSync.Round(time.Millisecond))
		}
		if f.lagZero < 0 {
			t.Errorf("fault %d (%s): the group never committed past the end offsets seen at the election", k+1, f.name)
		} else if d := f.lagZero - f.elected; d > maxLagZero {
			t.Errorf("fault %d (%s): the group committed past the end offsets seen at the election %v after it, want within %v", k+1, f.name, d.Round(time.Millisecond), maxLagZero)
		}
	}
	spool := "no spool"
	if spooled {
		spool = fmt.Sprintf("spooled: Store latency p99 %v max %v (fdatasync p99 %v max %v), publish errors %d+%d, longest call overlapping an election ≤ %v, through a fault ≤ %v",
			max(stMulti.SpoolLatency.P99, stSingle.SpoolLatency.P99).Round(time.Microsecond), max(stMulti.SpoolLatency.Max, stSingle.SpoolLatency.Max).Round(time.Microsecond),
			max(stMulti.Spool.SyncLatency.P99, stSingle.Spool.SyncLatency.P99).Round(time.Microsecond), max(stMulti.Spool.SyncLatency.Max, stSingle.Spool.SyncLatency.Max).Round(time.Microsecond),
			stMulti.Spool.PublishErrors, stSingle.Spool.PublishErrors, maxSpoolCall, maxSpoolCall+2*slowestSync)
	}
	t.Logf("SUMMARY %s: records=%d (callers %d+%d, no retries), Store errors %d, resent records %d+%d; %s; persisted=%d conflicts=%d; drained in %v; bounds ×%.1f for the load (%s on %d CPUs): wait past recovery ≤ %v, lag 0 ≤ %v after the election; %s",
		t.Name(), total, multiCallers, singleCallers, allErrs, stMulti.PublishRetries, stSingle.PublishRetries, spool, persisted, conflicts,
		drained.Round(time.Millisecond), slack, loadAverage(), runtime.NumCPU(), maxExcess, maxLagZero, strings.Join(report, "; "))
}

// loadAverage is the 1, 5 and 15 minute load averages (Linux).
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// loadSlack is the factor by which timing bounds grow on a busy machine:
// the 1-minute load average over two runnable threads per CPU, at least 1.
func loadSlack() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 1
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 1
	}
	load, err := strconv.ParseFloat(f[0], 64)
	if err != nil {
		return 1
	}
	return max(1, load/float64(2*runtime.NumCPU()))
}

func fmtDur(d time.Duration) string {
	if d <= 0 {
		return "-"
	}
	return d.Round(time.Millisecond).String()
}

// measureRecovery polls the metadata of a live node until the victim's
// partitions are all led by other nodes and the victim is out of every
// ISR, and, for a controller, a new quorum leader is known.
func measureRecovery(ctx context.Context, t *testing.T, b *kafkatest.Broker, f *failoverFault, topics map[string]int) {
	t.Helper()
	since := func() time.Duration { return time.Since(f.killed) }
	waitFor(t, 2*time.Minute, fmt.Sprintf("node %d's partitions to move and leave every ISR", f.victim), func() bool {
		if f.controller == 0 {
			if c, err := b.ActiveController(ctx); err == nil && c != f.victim {
				f.controller = since()
			}
		}
		parts, err := livePartitions(ctx, b, f.victim, topics)
		if err != nil {
			return false
		}
		elected, shrunk := true, true
		for _, p := range parts {
			if p.Leader.ID == f.victim || p.Leader.Port == 0 {
				elected = false
			}
			for _, r := range p.Isr {
				if r.ID == f.victim {
					shrunk = false
				}
			}
		}
		if elected && f.elected == 0 {
			f.elected = since()
		}
		if shrunk && f.isrShrunk == 0 {
			f.isrShrunk = since()
		}
		if f.elected > 0 && f.isrShrunk > 0 {
			f.recovered = max(f.elected, f.isrShrunk)
			return f.controller > 0 || ctx.Err() != nil
		}
		return false
	})
}

// livePartitions returns the partitions of topics as a node other than
// victim reports them.
func livePartitions(ctx context.Context, b *kafkatest.Broker, victim int, topics map[string]int) ([]kafka.Partition, error) {
	return b.PartitionsAt(ctx, b.NodeAddr((victim+1)%b.Nodes()), slices.Collect(maps.Keys(topics))...)
}

// lagZeroAfter returns how long after the kill the group had committed, on
// every partition of topics, at least the end offsets seen once the
// victim's partitions were elected (-1 when it did not within a minute):
// the lag of the election's moment back to 0, under continuing load.
func lagZeroAfter(ctx context.Context, t *testing.T, b *kafkatest.Broker, group string, topics map[string]int, addr string, f *failoverFault) time.Duration {
	t.Helper()
	ends := map[string]map[int]int64{}
	for topic := range topics {
		// A node may learn of the new leaders a moment after the one
		// measureRecovery asked.
		var err error
		for try := 0; ; try++ {
			if ends[topic], err = b.EndOffsets(ctx, topic); err == nil {
				break
			}
			if try == 30 {
				t.Fatalf("end offsets of %s after the election: %v", topic, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		caughtUp := true
		for topic, n := range topics {
			committed, err := Committed(ctx, addr, group, topic, n)
			if err != nil {
				caughtUp = false
				break
			}
			for p, end := range ends[topic] {
				if committed[p] < end {
					caughtUp = false
				}
			}
		}
		if caughtUp {
			return time.Since(f.killed)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return -1
}

// groupLagAt is GroupLag, its commits read from addr.
func groupLagAt(ctx context.Context, b *kafkatest.Broker, addr, group, topic string) (int64, error) {
	ends, err := b.EndOffsets(ctx, topic)
	if err != nil {
		return 0, err
	}
	committed, err := Committed(ctx, addr, group, topic, len(ends))
	if err != nil {
		return 0, err
	}
	var lag int64
	for p, end := range ends {
		lag += end - committed[p]
	}
	return lag, nil
}

// rawProbe produces one record at a time, acks=all, to a partition whose
// leader the fault does not kill, with a bare kafka-go client, recording
// its longest call: what the cluster imposes on any acks=all producer.
func rawProbe(t *testing.T, b *kafkatest.Broker, topic string, partition int, longest *time.Duration) (stop func()) {
	t.Helper()
	if partition < 0 {
		return func() {}
	}
	tr := &kafka.Transport{MetadataTTL: time.Second, MetadataTopics: []string{topic}}
	c := &kafka.Client{Addr: kafka.TCP(b.Addrs()...), Transport: tr, Timeout: time.Minute}
	done := make(chan struct{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	wg.Go(func() {
		for {
			select {
			case <-done:
				return
			default:
			}
			begin := time.Now()
			_, _ = c.Produce(context.Background(), &kafka.ProduceRequest{Topic: topic, Partition: partition, RequiredAcks: kafka.RequireAll,
				Records: kafka.NewRecordReader(kafka.Record{Value: kafka.NewBytes([]byte("probe"))})})
			mu.Lock()
			*longest = max(*longest, time.Since(begin))
			mu.Unlock()
			time.Sleep(10 * time.Millisecond)
		}
	})
	return func() {
		close(done)
		wg.Wait()
		tr.CloseIdleConnections()
	}
}
