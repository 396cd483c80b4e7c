package losstest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/go-whisk/activationstore/internal/kafkatest"
	"github.com/go-whisk/activationstore/internal/logtest"
	"github.com/go-whisk/activationstore/internal/testvolume"
	"github.com/go-whisk/activationstore/kafkastore"
	"github.com/go-whisk/activationstore/kafkastore/persister"
	"github.com/go-whisk/activationstore/primary/couchdb"
	"github.com/go-whisk/activationstore/primary/memory"
	"github.com/go-whisk/activationstore/store"
)

// victimRole says which node a kill of TestBrokerLossLosesNothing picks.
type victimRole int

const (
	// victimLeader leads the partition holding the most records.
	victimLeader victimRole = iota
	// victimCoordinator coordinates the persisters' consumer group.
	victimCoordinator
)

func (r victimRole) String() string {
	if r == victimCoordinator {
		return "group coordinator"
	}
	return "leader of the busiest partition"
}

// brokerKill is one node loss of TestBrokerLossLosesNothing and its figures.
type brokerKill struct {
	role victimRole
	at   float64 // fraction of the n records acknowledged before the kill

	victim, busiest int
	led             []int // partitions the victim led
	wasCoordinator  bool
	ackedAtKill     int64
	killed          time.Time
	// Since the kill: the busiest partition's leader, all of the victim's
	// partitions and the group's coordinator on other nodes; every
	// partition's committed offset moving again.
	busiestMoved, ledMoved, coordMoved, commitsMoved time.Duration
	restarted                                        time.Time
	restart, inSync                                  time.Duration // Restart's duration; from it to all replicas in sync
	before, after                                    persister.Stats
}

// A node of a three-node Apache Kafka cluster is killed with SIGKILL while
// 16 callers Store activations (acks=all, replication factor 3,
// min.insync.replicas=2) and two persisters of one group drain them into
// CouchDB; once the cluster has recovered without it, the node is
// restarted and its replicas catch up. This happens twice in one drain:
// first to the leader of the busiest partition, then to the persisters'
// group coordinator. Every acknowledged Store is in CouchDB exactly once;
// every failed Store returned its error to its caller, and the caller's
// retry of the same activation succeeded; after a coordinator loss the
// group commits again well within its session timeout.
//
// The callers go on past n records, at a slower pace, until the second
// node is back, so that both losses happen under load however fast the
// machine. kfake has no replication: this test always runs against Apache
// Kafka (Java required), -short included.
func TestBrokerLossLosesNothing(t *testing.T) {
	n := testvolume.Pick(5_000, 10_000, 50_000)
	const (
		partitions  = 8
		callers     = 16
		maxAttempts = 30 // per activation
		// Each caller's pause before a Store past n: at most 800
		// Stores/s in all while the kills go on.
		overtimePace = 20 * time.Millisecond
		// The persisters' session timeout: kafkastore's default.
		defaultSession = 30 * time.Second
	)
	kills := []*brokerKill{{role: victimLeader, at: 0.2}, {role: victimCoordinator, at: 0.5}}

	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	b := kafkatest.StartApache(t, kafkatest.WithNodes(3))
	topic := kafkatest.Topic(t, "completed")
	group := kafkatest.Topic(t, "group")
	primary, couchURL, db := couchPrimary(ctx, t)

	var storeLog, persisterLog logtest.Buffer
	defer func() {
		if t.Failed() {
			t.Logf("Store log (tail):\n%s\npersisters' log (tail):\n%s", storeLog.Tail(40), persisterLog.Tail(80))
		}
	}()
	// The Store's primary gets nothing: no fallback, no oversize records.
	s, err := kafkastore.New(memory.New(),
		kafkastore.WithBrokers(b.Addrs()...),
		kafkastore.WithTopic(topic),
		kafkastore.WithClientID("loss-store"),
		kafkastore.WithTopicPartitions(partitions),
		kafkastore.WithTopicReplicationFactor(3), // and so min.insync.replicas=2
		kafkastore.WithLogger(slog.New(slog.NewTextHandler(&storeLog, &slog.HandlerOptions{Level: slog.LevelWarn}))),
	)
	if err != nil {
		t.Fatalf("kafkastore.New: %v", err)
	}
	checkReplication(ctx, t, b, topic, 3, "2")
	storeClosed := false
	defer func() {
		if !storeClosed {
			_ = s.Close()
		}
	}()

	pattern := regexp.MustCompile("^" + regexp.QuoteMeta(topic) + "$")
	members := startChaosMembers(t, primary, b.Addrs(), group, pattern, &persisterLog, "loss-a", "loss-b")
	groupStats := func() (sum persister.Stats) {
		for _, m := range members {
			st := m.p.Stats()
			sum.Persisted += st.Persisted
			sum.Conflicts += st.Conflicts
			sum.Retries += st.Retries
			sum.CommitErrors += st.CommitErrors
		}
		return sum
	}

	// The callers: each takes the next activation and stores it, retrying
	// a failed Store of the same activation until it succeeds. Past n
	// they slow down to keep a light load (overtimePace) until the last
	// node is back; then they stop at limit, lowered to max(n, handed out):
	// activations [0, limit) are all stored.
	run := NewRun()
	capacity := n + 200_000
	acked := make([]atomic.Bool, capacity)
	var (
		next, ackedN atomic.Int64
		limit        atomic.Int64
		phase        atomic.Int32 // 0 before the first kill, k after kill k
		errMu        sync.Mutex
		storeErrs    = make([]int, len(kills)+1) // by phase
		lastErrAt    = make([]time.Time, len(kills)+1)
		errBegun     = make([][]time.Time, len(kills)+1) // by phase: when each failed Store began
		errKinds     = map[string]int{}
		errSamples   = map[string]string{}
		retried      int
		unacked      []int
		wg           sync.WaitGroup
	)
	limit.Store(int64(capacity))
	began := time.Now()
	for range callers {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if int64(i) >= limit.Load() {
					return
				}
				if i >= n {
					time.Sleep(overtimePace)
				}
				a := Activation(run, i)
				for attempt := 1; ; attempt++ {
					begun := time.Now()
					_, err := s.Store(ctx, a, store.UserContext{TransactionID: "loss"})
					if err == nil {
						acked[i].Store(true)
						ackedN.Add(1)
						break
					}
					kind := storeErrKind(err)
					errMu.Lock()
					ph := phase.Load()
					storeErrs[ph]++
					lastErrAt[ph] = time.Now()
					errBegun[ph] = append(errBegun[ph], begun)
					if errKinds[kind]++; errKinds[kind] == 1 {
						errSamples[kind] = err.Error()
					}
					giveUp := attempt == maxAttempts || ctx.Err() != nil
					if giveUp {
						unacked = append(unacked, i)
					} else {
						retried++
					}
					errMu.Unlock()
					if giveUp {
						break
					}
					time.Sleep(min(time.Duration(attempt)*100*time.Millisecond, time.Second))
				}
			}
		})
	}
	callersDone := make(chan struct{})
	go func() { wg.Wait(); close(callersDone) }()
	// Acknowledgements counted every 100 ms: the stalls after the kills.
	var samples []ackSample
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-callersDone:
				samples = append(samples, ackSample{time.Now(), ackedN.Load()})
				return
			case now := <-tick.C:
				samples = append(samples, ackSample{now, ackedN.Load()})
			}
		}
	}()

	for k, kl := range kills {
		waitFor(t, 3*time.Minute, fmt.Sprintf("%.0f%% of %d records acknowledged before kill %d", 100*kl.at, n, k+1),
			func() bool { return ackedN.Load() >= int64(float64(n)*kl.at) })
		select {
		case <-callersDone:
			t.Fatalf("the callers stopped before kill %d: %d activations acknowledged (capacity %d); the kill would happen without load", k+1, ackedN.Load(), capacity)
		default:
		}
		loseNode(ctx, t, b, topic, group, partitions, kl, func() {
			kl.before = groupStats()
			kl.ackedAtKill = ackedN.Load()
			phase.Store(int32(k + 1))
		})
		kl.after = groupStats()
	}
	limit.Store(min(int64(capacity), max(int64(n), next.Load())))

	select {
	case <-callersDone:
	case <-time.After(3 * time.Minute):
		errMu.Lock()
		defer errMu.Unlock()
		t.Fatalf("Store callers not done 3 min after the last restart: %d acknowledged, errors by phase %v", ackedN.Load(), storeErrs)
	}
	total := int(limit.Load())
	stored := time.Since(began)
	<-sampled
	waitFor(t, 3*time.Minute, "the group to commit to the end", func() bool {
		lag, err := GroupLag(ctx, b, group, topic)
		return err == nil && lag == 0
	})
	drained := time.Since(began)

	// The persisters stop cleanly: nothing of theirs hangs on a lost node.
	var perMember []string
	for _, m := range members {
		m.stop(t)
		st := m.p.Stats()
		perMember = append(perMember, fmt.Sprintf("%s:%d/%d", m.name, st.Persisted, st.Conflicts))
	}
	final := groupStats()
	storeClosed = true
	if err := s.Close(); err != nil {
		t.Errorf("Store.Close: %v", err)
	}
	stats := s.Stats()

	// Every acknowledged record is in CouchDB once; so is every other one,
	// since the callers retried until acknowledged.
	ids := listDocIDs(ctx, t, couchURL, db, time.Minute)
	tally := CheckDocIDs(ids, run, total)
	present := make([]bool, total)
	for _, id := range ids {
		if _, aid, ok := strings.Cut(id, "/"); ok {
			if r, i, ok := Index(aid); ok && r == run && i < total {
				present[i] = true
			}
		}
	}
	var lostAcked []int
	nAcked := 0
	for i := range acked {
		if acked[i].Load() {
			nAcked++
			if !present[i] && len(lostAcked) < 10 {
				lostAcked = append(lostAcked, i)
			}
		}
	}
	if len(lostAcked) > 0 {
		t.Errorf("acknowledged Stores missing from CouchDB (first %d): %v", len(lostAcked), lostAcked)
	}
	if !tally.OK() || tally.Present != total {
		t.Errorf("database %s: %v; want all %d present once", db, tally, total)
	}
	if len(unacked) > 0 {
		slices.Sort(unacked)
		t.Errorf("%d activations never acknowledged after %d attempts each (first %v): with two of three nodes up, acks=all writes must go through",
			len(unacked), maxAttempts, unacked[:min(len(unacked), 10)])
	}
	if c, err := DocCount(ctx, couchURL, db); err != nil || c-len(couchdb.DesignDocs()) != total {
		t.Errorf("doc_count minus design documents = %d (%v), want %d", c-len(couchdb.DesignDocs()), err, total)
	}
	// Each record is counted once, unless an offset commit failed at a
	// generation's end (the coordinator killed): the records it would have
	// committed are then counted by their next owner as well (see
	// persister.Stats). The database tally above is what proves
	// each document was created once.
	switch {
	case final.Persisted < int64(total):
		t.Errorf("sum of Persisted over the persisters = %d, want at least %d: every document counted", final.Persisted, total)
	case final.Persisted > int64(total) && final.CommitErrors == 0:
		t.Errorf("sum of Persisted over the persisters = %d, want %d with no failed commit: each record counted once", final.Persisted, total)
	}
	// Each failure the Store counted reached a caller, and each
	// acknowledgement is a record the Store counted as published.
	var nErrs int
	for _, e := range storeErrs {
		nErrs += e
	}
	if stats.PublishFailures != uint64(nErrs) || stats.Published != uint64(nAcked) {
		t.Errorf("Store.Stats: published %d, publish failures %d; the callers saw %d acknowledgements and %d errors",
			stats.Published, stats.PublishFailures, nAcked, nErrs)
	}
	if storeErrs[0] > 0 {
		t.Errorf("%d Store errors before the first kill", storeErrs[0])
	}
	// kafka-go joins again as a new member after a coordinator loss; unless
	// the persisters take their old members out, the new coordinator waits
	// for them to expire: the session timeout.
	for k, kl := range kills {
		if kl.wasCoordinator && kl.commitsMoved-kl.coordMoved > defaultSession/2 {
			t.Errorf("kill %d: the group committed again %v after its coordinator moved, want well under the %v session timeout",
				k+1, (kl.commitsMoved - kl.coordMoved).Round(time.Millisecond), defaultSession)
		}
	}

	var report []string
	var marks []string
	for k, kl := range kills {
		// Stores begun once the victim's partitions had new leaders
		// failed only on stale routing.
		lateErrs := 0
		for _, at := range errBegun[k+1] {
			if at.After(kl.killed.Add(kl.ledMoved)) {
				lateErrs++
			}
		}
		busiestMoved := "-" // the victim did not lead it
		if slices.Contains(kl.led, kl.busiest) {
			busiestMoved = kl.busiestMoved.Round(time.Millisecond).String()
		}
		lastErr := "none"
		if !lastErrAt[k+1].IsZero() {
			lastErr = lastErrAt[k+1].Sub(kl.killed).Round(time.Millisecond).String() + " after the kill"
		}
		report = append(report, fmt.Sprintf("kill %d [node %d, %s; it led partitions %v (busiest %d), coordinator %v; at acked=%d, %v in] "+
			"busiest partition's leader moved in %s, all its partitions in %v, group coordinator in %v, every partition committing again in %v; "+
			"Stores back to half their rate in %v; Store errors %d (last %s; %d begun after all its partitions had new leaders); persisted %d, conflicts %d, persister retries %d, commit errors %d until back in sync; restart took %v, in sync %v after it",
			k+1, kl.victim, kl.role, kl.led, kl.busiest, kl.wasCoordinator, kl.ackedAtKill, kl.killed.Sub(began).Round(time.Millisecond),
			busiestMoved, kl.ledMoved.Round(time.Millisecond), kl.coordMoved.Round(time.Millisecond), kl.commitsMoved.Round(time.Millisecond),
			storeRecovery(samples, began, kl.killed).Round(100*time.Millisecond),
			storeErrs[k+1], lastErr, lateErrs, kl.after.Persisted-kl.before.Persisted, kl.after.Conflicts-kl.before.Conflicts,
			kl.after.Retries-kl.before.Retries, kl.after.CommitErrors-kl.before.CommitErrors,
			kl.restart.Round(time.Millisecond), kl.inSync.Round(time.Millisecond)))
		marks = append(marks, fmt.Sprintf("kill %d in second %d, restart in second %d", k+1,
			int(kl.killed.Sub(began).Seconds())+1, int(kl.restarted.Sub(began).Seconds())+1))
	}
	t.Logf("SUMMARY %s: records=%d (n=%d) partitions=%d callers=%d persisters=2; %s; "+
		"Store errors=%d (kinds %v), retried %d, never acknowledged %d; publish latency p50=%v p99=%v max=%v; "+
		"stored in %v, drained in %v (%.0f/s); persisted=%d conflicts=%d persister retries=%d commit errors=%d (per member persisted/conflicts %s); present=%d missing=%d duplicates=%d",
		t.Name(), total, n, partitions, callers, strings.Join(report, "; "),
		nErrs, errKinds, retried, len(unacked),
		stats.PublishLatency.P50.Round(time.Millisecond), stats.PublishLatency.P99.Round(time.Millisecond), stats.PublishLatency.Max.Round(time.Millisecond),
		stored.Round(time.Millisecond), drained.Round(time.Millisecond), float64(total)/drained.Seconds(),
		final.Persisted, final.Conflicts, final.Retries, final.CommitErrors, strings.Join(perMember, " "),
		tally.Present, tally.Missing, tally.Duplicates)
	t.Logf("acknowledged Stores per second (%s): %v", strings.Join(marks, ", "), perSecond(samples, began))
	for _, kind := range slices.Sorted(maps.Keys(errSamples)) {
		t.Logf("first Store error of kind %s: %s", kind, errSamples[kind])
	}
}

// loseNode kills the node kl.role names, measures the failover, restarts
// the node once every partition commits again, and waits for its replicas
// to catch up. atKill runs just before the kill.
func loseNode(ctx context.Context, t *testing.T, b *kafkatest.Broker, topic, group string, partitions int, kl *brokerKill, atKill func()) {
	t.Helper()
	ends, err := b.EndOffsets(ctx, topic)
	if err != nil {
		t.Fatalf("end offsets: %v", err)
	}
	kl.busiest = 0
	for p, end := range ends {
		if end > ends[kl.busiest] || end == ends[kl.busiest] && p < kl.busiest {
			kl.busiest = p
		}
	}
	leaders := make([]int, partitions)
	for p := range leaders {
		if leaders[p], err = b.Leader(ctx, topic, p); err != nil {
			t.Fatalf("leader of %s/%d: %v", topic, p, err)
		}
	}
	coordinator, err := b.Coordinator(ctx, group)
	if err != nil {
		t.Fatal(err)
	}
	kl.victim = leaders[kl.busiest]
	if kl.role == victimCoordinator {
		kl.victim = coordinator
	}
	kl.wasCoordinator = coordinator == kl.victim
	kl.led = nil
	for p, l := range leaders {
		if l == kl.victim {
			kl.led = append(kl.led, p)
		}
	}
	live := b.NodeAddr((kl.victim + 1) % b.Nodes())
	committedAtKill, err := Committed(ctx, live, group, topic, partitions)
	if err != nil {
		t.Fatalf("committed offsets: %v", err)
	}

	atKill()
	if err := b.Kill(kl.victim); err != nil {
		t.Fatal(err)
	}
	kl.killed = time.Now()
	since := func() time.Duration { return time.Since(kl.killed) }

	// Failover: the victim's partitions get new leaders, its groups a new
	// coordinator, and every partition's commits move again.
	waitFor(t, 90*time.Second, fmt.Sprintf("node %d's partitions %v and group coordination to move to other nodes", kl.victim, kl.led), func() bool {
		if kl.ledMoved == 0 {
			moved := 0
			for _, p := range kl.led {
				if l, err := b.Leader(ctx, topic, p); err == nil && l >= 0 && l != kl.victim {
					moved++
					if p == kl.busiest && kl.busiestMoved == 0 {
						kl.busiestMoved = since()
					}
				}
			}
			if moved == len(kl.led) {
				kl.ledMoved = since()
			}
		}
		if kl.coordMoved == 0 {
			if c, err := b.Coordinator(ctx, group); err == nil && c != kl.victim {
				kl.coordMoved = since()
			}
		}
		return kl.ledMoved > 0 && kl.coordMoved > 0
	})
	waitFor(t, 2*time.Minute, "the group to commit again on every partition", func() bool {
		ends, err := b.EndOffsets(ctx, topic)
		if err != nil {
			return false
		}
		committed, err := Committed(ctx, live, group, topic, partitions)
		if err != nil {
			return false
		}
		for p, end := range ends {
			if c, ok := committed[p]; !ok || c <= committedAtKill[p] && c < end {
				return false
			}
		}
		kl.commitsMoved = since()
		return true
	})

	kl.restarted = time.Now()
	if err := b.Restart(ctx, kl.victim); err != nil {
		t.Fatalf("restart node %d: %v", kl.victim, err)
	}
	kl.restart = time.Since(kl.restarted)
	if err := b.WaitInSync(ctx, topic); err != nil {
		t.Fatalf("after restarting node %d: %v", kl.victim, err)
	}
	kl.inSync = time.Since(kl.restarted) - kl.restart
}

// ackSample is the number of acknowledged Stores at a moment.
type ackSample struct {
	at    time.Time
	acked int64
}

// ackedAt is the last count sampled at or before t.
func ackedAt(samples []ackSample, t time.Time) int64 {
	var n int64
	for _, s := range samples {
		if s.at.After(t) {
			break
		}
		n = s.acked
	}
	return n
}

// perSecond returns the acknowledgements of each second since began.
func perSecond(samples []ackSample, began time.Time) []int64 {
	var out []int64
	last := int64(0)
	for sec := began.Add(time.Second); len(samples) > 0; sec = sec.Add(time.Second) {
		n := ackedAt(samples, sec)
		out = append(out, n-last)
		last = n
		if !sec.Before(samples[len(samples)-1].at) {
			break
		}
	}
	return out
}

// storeRecovery is how long after kill the Stores took to be acknowledged
// again at half their rate of the 5 s before it, measured over 500 ms
// windows that start after the kill; -1 when they never did.
func storeRecovery(samples []ackSample, began, kill time.Time) time.Duration {
	const window = 500 * time.Millisecond
	from := kill.Add(-5 * time.Second)
	if from.Before(began) {
		from = began
	}
	rate := float64(ackedAt(samples, kill)-ackedAt(samples, from)) / kill.Sub(from).Seconds()
	for _, s := range samples {
		if s.at.Before(kill.Add(window)) {
			continue
		}
		if float64(s.acked-ackedAt(samples, s.at.Add(-window))) >= rate*window.Seconds()/2 {
			return s.at.Sub(kill)
		}
	}
	return -1
}

// checkReplication fails the test unless every partition of topic has rf
// replicas, all in sync, and the topic's min.insync.replicas is minISR.
func checkReplication(ctx context.Context, t *testing.T, b *kafkatest.Broker, topic string, rf int, minISR string) {
	t.Helper()
	if err := b.WaitInSync(ctx, topic); err != nil {
		t.Fatal(err)
	}
	conn, err := b.Dialer().DialContext(ctx, "tcp", b.Addr())
	if err != nil {
		t.Fatalf("dial %s: %v", b.Addr(), err)
	}
	defer conn.Close()
	parts, err := conn.ReadPartitions(topic)
	if err != nil {
		t.Fatalf("partitions of %s: %v", topic, err)
	}
	for _, p := range parts {
		if len(p.Replicas) != rf {
			t.Fatalf("%s/%d has replicas %v; want %d", topic, p.ID, p.Replicas, rf)
		}
	}
	tr := b.Transport()
	defer tr.CloseIdleConnections()
	c := &kafka.Client{Addr: kafka.TCP(b.Addrs()...), Transport: tr, Timeout: 10 * time.Second}
	res, err := c.DescribeConfigs(ctx, &kafka.DescribeConfigsRequest{Resources: []kafka.DescribeConfigRequestResource{{
		ResourceType: kafka.ResourceTypeTopic, ResourceName: topic, ConfigNames: []string{"min.insync.replicas"},
	}}})
	if err != nil {
		t.Fatalf("describe %s: %v", topic, err)
	}
	for _, r := range res.Resources {
		for _, e := range r.ConfigEntries {
			if e.ConfigName == "min.insync.replicas" && e.ConfigValue == minISR {
				return
			}
		}
	}
	t.Fatalf("%s: min.insync.replicas is not %s: %+v", topic, minISR, res.Resources)
}

// storeErrKind names the class of a Store error for the summary.
func storeErrKind(err error) string {
	var perr *kafkastore.PublishError
	if !errors.As(err, &perr) {
		if errors.Is(err, kafkastore.ErrClosed) {
			return "closed"
		}
		return "other"
	}
	var kerr kafka.Error
	var nerr net.Error
	switch cause := perr.Err; {
	case errors.As(cause, &kerr):
		return strings.ReplaceAll(kerr.Title(), " ", "")
	case errors.Is(cause, syscall.ECONNREFUSED):
		return "ConnectionRefused"
	case errors.Is(cause, syscall.ECONNRESET), errors.Is(cause, io.EOF), errors.Is(cause, io.ErrUnexpectedEOF):
		return "ConnectionLost"
	case errors.Is(cause, context.DeadlineExceeded), errors.As(cause, &nerr) && nerr.Timeout():
		return "Timeout"
	}
	return "Other"
}
