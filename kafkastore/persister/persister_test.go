package persister

import (
	"context"
	"errors"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/go-whisk/activationstore/internal/activationtest"
	"github.com/go-whisk/activationstore/internal/kafkatest"
	"github.com/go-whisk/activationstore/kafkastore"
	"github.com/go-whisk/activationstore/primary/memory"
	"github.com/go-whisk/activationstore/store"
)

// exactTopics follows exactly the named topics.
func exactTopics(topics ...string) *regexp.Regexp {
	s := "^("
	for i, t := range topics {
		if i > 0 {
			s += "|"
		}
		s += regexp.QuoteMeta(t)
	}
	return regexp.MustCompile(s + ")$")
}

func TestPersisterPersistsEveryRecordOnce(t *testing.T) {
	b := kafkatest.Start(t)
	topic := kafkatest.Topic(t, "completed-others")
	b.CreateTopic(t, topic, 4, nil)
	const n = 10_000
	as := produceActivations(t, b, topic, "guest", n)

	primary := memory.New()
	group := kafkatest.Topic(t, "group")
	p := newTestPersister(t, b, primary, WithTopicPattern(exactTopics(topic)), WithGroupID(group))
	runPersister(t, p)

	waitUntil(t, 60*time.Second, "10k activations persisted", func() bool { return primary.Len() >= n })
	waitCommittedToEnd(t, b, group, topic, 4, p)
	checkAllStored(t, primary, "guest", as)

	s := p.Stats()
	if s.Persisted+s.Conflicts != n || s.Skipped != 0 || s.DeadLettered != 0 || s.Retries != 0 {
		t.Errorf("stats %+v: want %d persisted+conflicts, nothing skipped, dead-lettered or retried", s, n)
	}
	if !s.Ready || !p.Ready() {
		t.Errorf("Ready = %v, stats.Ready = %v; want true once joined", p.Ready(), s.Ready)
	}
	if len(s.Partitions) != 4 {
		t.Fatalf("stats partitions %+v, want the 4 of %s", s.Partitions, topic)
	}
	waitUntil(t, 5*time.Second, "lag 0 on every partition", func() bool {
		for _, pl := range p.Stats().Partitions {
			if pl.Lag != 0 || pl.InFlight != 0 || pl.Committed < 0 {
				return false
			}
		}
		return true
	})
	if s.Batches == 0 || s.BatchRecords < s.Batches || s.BatchLatency <= 0 {
		t.Errorf("batch stats %d batches, %d records, %v: want batches with records and latency", s.Batches, s.BatchRecords, s.BatchLatency)
	}
	if s.BatchRecords/s.Batches < 2 {
		t.Errorf("average batch %d records: want batching of a backlog", s.BatchRecords/s.Batches)
	}
}

func TestPersisterRestartLosesNothing(t *testing.T) {
	b := kafkatest.Start(t)
	topic := kafkatest.Topic(t, "completed-others")
	b.CreateTopic(t, topic, 2, nil)
	const n = 3000
	as := produceActivations(t, b, topic, "guest", n)

	primary := memory.New()
	group := kafkatest.Topic(t, "group")
	opts := []Option{WithTopicPattern(exactTopics(topic)), WithGroupID(group), WithBatch(50, 1<<20, time.Millisecond)}
	// About 2,500 records/s: slow enough to stop it mid-stream.
	slow := &slowBatchPrimary{innerStore: primary, batch: primary, delay: 20 * time.Millisecond}

	p1 := newTestPersister(t, b, slow, append(opts, WithWriteConcurrency(1))...)
	stop1 := runPersister(t, p1)
	waitUntil(t, 30*time.Second, "a third persisted", func() bool { return primary.Len() >= n/3 })
	stop1() // mid-stream
	if got := primary.Len(); got >= n {
		t.Fatalf("first persister finished everything (%d) before it was stopped; the test proves nothing", got)
	}
	if p1.Ready() {
		t.Errorf("Ready after Run returned")
	}
	// Whatever was committed was persisted.
	committed := committedOffsets(t, b, group, topic, 2)
	var sum int64
	for _, off := range committed {
		sum += max(off, 0)
	}
	if sum > int64(primary.Len()) {
		t.Fatalf("committed %d records in total but only %d persisted", sum, primary.Len())
	}

	p2 := newTestPersister(t, b, primary, opts...)
	runPersister(t, p2)
	waitUntil(t, 30*time.Second, "everything persisted after the restart", func() bool { return primary.Len() >= n })
	waitCommittedToEnd(t, b, group, topic, 2, p1, p2)
	checkAllStored(t, primary, "guest", as)
	s1, s2 := p1.Stats(), p2.Stats()
	if s1.Persisted+s2.Persisted != n {
		t.Errorf("persisted %d + %d, want %d in total", s1.Persisted, s2.Persisted, n)
	}
}

func TestPersisterGroupSharesPartitions(t *testing.T) {
	b := kafkatest.Start(t)
	topic := kafkatest.Topic(t, "completed-others")
	b.CreateTopic(t, topic, 6, nil)
	primary := memory.New()
	group := kafkatest.Topic(t, "group")

	var ps []*Persister
	start := func(i int) {
		p := newTestPersister(t, b, primary, WithTopicPattern(exactTopics(topic)), WithGroupID(group),
			kafkastore.WithClientID("persister-test-"+strconv.Itoa(i)))
		runPersister(t, p)
		ps = append(ps, p)
	}
	start(0)
	waitUntil(t, 10*time.Second, "the first persister assigned every partition", func() bool { return len(ps[0].Stats().Partitions) == 6 })
	as := produceActivations(t, b, topic, "guest", 1500)
	start(1) // rebalances while the first one persists
	start(2)
	waitUntil(t, 30*time.Second, "each persister assigned 2 of the 6 partitions", func() bool {
		for _, p := range ps {
			if len(p.Stats().Partitions) != 2 {
				return false
			}
		}
		return true
	})
	const n = 3000
	as = append(as, produceActivations(t, b, topic, "guest", n-1500)...)
	waitUntil(t, 30*time.Second, "everything persisted", func() bool { return primary.Len() >= n })
	waitCommittedToEnd(t, b, group, topic, 6, ps...)
	checkAllStored(t, primary, "guest", as)
	var total int64
	for i, p := range ps {
		s := p.Stats()
		if s.Persisted == 0 {
			t.Errorf("persister %d persisted nothing; want a share", i)
		}
		total += s.Persisted + s.Conflicts
	}
	if total < n {
		t.Errorf("persisted %d in total, want %d", total, n)
	}
}

func TestPersisterFollowsNewTopics(t *testing.T) {
	b := kafkatest.Start(t)
	prefix := kafkatest.Topic(t, "completed")
	re := regexp.MustCompile("^" + regexp.QuoteMeta(prefix) + "-.*")
	primary := memory.New()
	p := newTestPersister(t, b, primary, WithTopicPattern(re))
	runPersister(t, p)
	waitUntil(t, 10*time.Second, "ready with no topic", p.Ready)

	first := prefix + "-others"
	b.CreateTopic(t, first, 1, nil)
	as := produceActivations(t, b, first, "guest", 100)
	waitUntil(t, 15*time.Second, "records of a topic created after start", func() bool { return primary.Len() >= 100 })

	second := prefix + "-0"
	b.CreateTopic(t, second, 2, nil)
	as = append(as, produceActivations(t, b, second, "guest", 100)...)
	waitUntil(t, 15*time.Second, "records of a second new topic", func() bool { return primary.Len() >= 200 })
	checkAllStored(t, primary, "guest", as)
	waitUntil(t, 5*time.Second, "3 partitions assigned", func() bool { return len(p.Stats().Partitions) == 3 })
}

func TestPersisterRetriesTransientFailures(t *testing.T) {
	for _, tc := range []struct {
		name  string
		batch bool
	}{{"StoreBatch", true}, {"Store", false}} {
		t.Run(tc.name, func(t *testing.T) {
			b := kafkatest.Start(t)
			topic := kafkatest.Topic(t, "completed-others")
			b.CreateTopic(t, topic, 2, nil)
			mem := memory.New()
			f := &faultyPrimary{innerStore: mem}
			var primary store.Store = f
			if tc.batch {
				primary = &faultyBatchPrimary{faultyPrimary: f, batch: mem}
			}
			f.failing.Store(true)
			group := kafkatest.Topic(t, "group")
			p := newTestPersister(t, b, primary, WithTopicPattern(exactTopics(topic)), WithGroupID(group))
			runPersister(t, p)
			as := produceActivations(t, b, topic, "guest", 500)

			waitUntil(t, 15*time.Second, "retries while the primary is down", func() bool { return p.Stats().Retries >= 5 })
			for part, off := range committedOffsets(t, b, group, topic, 2) {
				if off > 0 {
					t.Fatalf("partition %d committed at %d while nothing is persisted", part, off)
				}
			}
			if mem.Len() != 0 {
				t.Fatalf("%d stored while failing", mem.Len())
			}
			f.failing.Store(false)
			waitUntil(t, 15*time.Second, "everything persisted after recovery", func() bool { return mem.Len() >= 500 })
			waitCommittedToEnd(t, b, group, topic, 2, p)
			checkAllStored(t, mem, "guest", as)
			if s := p.Stats(); s.Persisted != 500 || s.DeadLettered != 0 {
				t.Errorf("stats %+v: want 500 persisted, none dead-lettered", s)
			}
		})
	}
}

// The OpenWhisk persister committed past records still being saved. Here
// one record fails while those after it succeed: the commit must stop
// before it, also on shutdown.
func TestPersisterCommitsOnlyContiguousPrefix(t *testing.T) {
	b := kafkatest.Start(t)
	topic := kafkatest.Topic(t, "completed-others")
	b.CreateTopic(t, topic, 1, nil)
	mem := memory.New()
	f := &faultyPrimary{innerStore: mem, failIDs: map[string]bool{}}
	primary := &faultyBatchPrimary{faultyPrimary: f, batch: mem}

	as := make([]*store.Activation, 100)
	values := make([][]byte, len(as))
	for i := range as {
		as[i] = activationtest.New("guest")
		values[i] = resultMessage(t, as[i])
	}
	f.failIDs[as[40].ActivationID] = true
	produceValues(t, b, topic, values...)

	group := kafkatest.Topic(t, "group")
	p := newTestPersister(t, b, primary, WithTopicPattern(exactTopics(topic)), WithGroupID(group),
		WithBatch(10, 1<<20, time.Millisecond), WithWriteConcurrency(4))
	stop := runPersister(t, p)
	waitUntil(t, 15*time.Second, "all but one persisted", func() bool { return mem.Len() >= 99 })
	time.Sleep(300 * time.Millisecond) // several commit intervals
	if got := committedOffsets(t, b, group, topic, 1)[0]; got != 40 {
		t.Fatalf("committed offset %d while record 40 is not persisted; want 40", got)
	}
	if pl := p.Stats().Partitions[0]; pl.Committed != 40 || pl.InFlight != 60 || pl.Lag != 60 {
		t.Errorf("partition stats %+v: want committed 40, 60 in flight, lag 60", pl)
	}
	stop() // graceful shutdown must not commit the failing record
	if got := committedOffsets(t, b, group, topic, 1)[0]; got != 40 {
		t.Fatalf("after shutdown committed offset %d; want 40", got)
	}

	// A restart with a healthy primary reads from 40: 1 new, and 59 that
	// the first persister wrote (the last commit named them in doubt):
	// persisted, not conflicts. The first counted them abandoned.
	f.mu.Lock()
	clear(f.failIDs)
	f.mu.Unlock()
	p2 := newTestPersister(t, b, primary, WithTopicPattern(exactTopics(topic)), WithGroupID(group))
	runPersister(t, p2)
	waitCommittedToEnd(t, b, group, topic, 1, p2)
	checkAllStored(t, mem, "guest", as)
	if s := p2.Stats(); s.Persisted != 60 || s.Redelivered != 59 || s.Conflicts != 0 {
		t.Errorf("restart stats persisted %d (redelivered %d), conflicts %d; want 60 (59), 0", s.Persisted, s.Redelivered, s.Conflicts)
	}
	if s := p.Stats(); s.Persisted != 40 || s.Abandoned != 60 {
		t.Errorf("first persister: persisted %d, abandoned %d; want 40 committed, 60 left to the next owner", s.Persisted, s.Abandoned)
	}
}

func TestPersisterReplayIsAbsorbedAsConflicts(t *testing.T) {
	b := kafkatest.Start(t)
	topic := kafkatest.Topic(t, "completed-others")
	b.CreateTopic(t, topic, 2, nil)
	as := produceActivations(t, b, topic, "guest", 400)
	mem := memory.New()

	p1 := newTestPersister(t, b, mem, WithTopicPattern(exactTopics(topic)))
	stop := runPersister(t, p1)
	waitUntil(t, 15*time.Second, "first pass", func() bool { return mem.Len() >= 400 })
	stop()

	// A new group reads everything again; the records are also re-produced.
	values := make([][]byte, 0, 100)
	for _, a := range as[:100] {
		values = append(values, resultMessage(t, a))
	}
	produceValues(t, b, topic, values...)
	group := kafkatest.Topic(t, "replay")
	p2 := newTestPersister(t, b, mem, WithTopicPattern(exactTopics(topic)), WithGroupID(group))
	runPersister(t, p2)
	waitCommittedToEnd(t, b, group, topic, 2, p2)
	if s := p2.Stats(); s.Conflicts != 500 || s.Persisted != 0 {
		t.Errorf("replay stats persisted %d conflicts %d; want 0 and 500", s.Persisted, s.Conflicts)
	}
	checkAllStored(t, mem, "guest", as)
}

func TestPersisterShutdownAbandonsUnpersisted(t *testing.T) {
	b := kafkatest.Start(t)
	topic := kafkatest.Topic(t, "completed-others")
	b.CreateTopic(t, topic, 1, nil)
	mem := memory.New()
	f := &faultyPrimary{innerStore: mem}
	primary := &faultyBatchPrimary{faultyPrimary: f, batch: mem}
	group := kafkatest.Topic(t, "group")
	p := newTestPersister(t, b, primary, WithTopicPattern(exactTopics(topic)), WithGroupID(group), WithDrainTimeout(100*time.Millisecond))
	stop := runPersister(t, p)
	produceActivations(t, b, topic, "guest", 50)
	waitUntil(t, 15*time.Second, "first records persisted", func() bool { return mem.Len() >= 50 })
	waitCommittedToEnd(t, b, group, topic, 1)

	f.failing.Store(true)
	produceActivations(t, b, topic, "guest", 50)
	waitUntil(t, 15*time.Second, "retries", func() bool { return p.Stats().Retries > 0 })
	start := time.Now()
	stop()
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("shutdown took %v with a failing primary; want about the drain timeout", d)
	}
	if got := committedOffsets(t, b, group, topic, 1)[0]; got != 50 {
		t.Fatalf("committed %d after shutdown; want 50 (nothing unpersisted)", got)
	}
	if s := p.Stats(); s.InFlightBytes != 0 {
		t.Errorf("in-flight bytes %d after Run returned; want 0", s.InFlightBytes)
	}
}

func TestPersisterBoundsInFlightBytes(t *testing.T) {
	b := kafkatest.Start(t)
	topic := kafkatest.Topic(t, "activations")
	b.CreateTopic(t, topic, 3, nil)
	const n, cap = 600, 256 << 10
	as := make([]*store.Activation, n)
	values := make([][]byte, n)
	for i := range as {
		as[i] = activationtest.New("guest")
		as[i].Logs = []string{strconv.Itoa(i) + strings.Repeat("x", 2000)}
		values[i] = resultMessage(t, as[i])
	}
	produceValues(t, b, topic, values...)
	mem := memory.New()
	slow := &slowBatchPrimary{innerStore: mem, batch: mem, delay: 5 * time.Millisecond}
	p := newTestPersister(t, b, slow, WithTopicPattern(exactTopics(topic)), WithMaxInFlightBytes(cap))
	runPersister(t, p)
	waitUntil(t, 30*time.Second, "backlog persisted", func() bool { return mem.Len() >= n })
	checkAllStored(t, mem, "guest", as)
	s := p.Stats()
	if s.MaxInFlightBytes > cap {
		t.Errorf("in-flight bytes peaked at %d, above the cap %d", s.MaxInFlightBytes, cap)
	}
	if s.MaxInFlightBytes < cap/2 {
		t.Errorf("in-flight bytes peaked at %d: the cap %d was never approached, the test proves nothing", s.MaxInFlightBytes, cap)
	}
}

// slowBatchPrimary delays each batch, so that a backlog piles up.
type slowBatchPrimary struct {
	innerStore
	batch store.BatchStorer
	delay time.Duration
}

func (s *slowBatchPrimary) StoreBatch(ctx context.Context, as []*store.Activation, uc store.UserContext) ([]store.BatchResult, error) {
	select {
	case <-time.After(s.delay):
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return s.batch.StoreBatch(ctx, as, uc)
}

func TestPersisterLeavesNoGoroutines(t *testing.T) {
	b := kafkatest.Start(t)
	topic := kafkatest.Topic(t, "completed-others")
	b.CreateTopic(t, topic, 2, nil)
	produceActivations(t, b, topic, "guest", 100)
	mem := memory.New()
	before := goleak.IgnoreCurrent()
	p := newTestPersister(t, b, mem, WithTopicPattern(exactTopics(topic)))
	stop := runPersister(t, p)
	waitUntil(t, 15*time.Second, "persisted", func() bool { return mem.Len() == 100 })
	stop()
	// Server-side reads of the broker serve the test helpers' idle clients.
	goleak.VerifyNone(t, before, goleak.IgnoreTopFunction("github.com/twmb/franz-go/pkg/kfake.(*clientConn).read.func1"))
}

func TestPersisterRunTwice(t *testing.T) {
	b := kafkatest.Start(t)
	p := newTestPersister(t, b, memory.New(), WithTopicPattern(exactTopics(kafkatest.Topic(t, "none"))))
	runPersister(t, p)
	waitUntil(t, 10*time.Second, "running", p.Ready)
	if err := p.Run(context.Background()); !errors.Is(err, ErrRunning) {
		t.Fatalf("second Run = %v, want ErrRunning", err)
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	for name, tc := range map[string]struct {
		primary store.Store
		opts    []Option
	}{
		"nil primary":       {nil, []Option{kafkastore.WithBrokers("127.0.0.1:1")}},
		"no brokers":        {memory.New(), nil},
		"empty group":       {memory.New(), []Option{kafkastore.WithBrokers("127.0.0.1:1"), WithGroupID("")}},
		"nil pattern":       {memory.New(), []Option{kafkastore.WithBrokers("127.0.0.1:1"), WithTopicPattern(nil)}},
		"bad dlq name":      {memory.New(), []Option{kafkastore.WithBrokers("127.0.0.1:1"), WithDeadLetterTopic("a b")}},
		"zero batch":        {memory.New(), []Option{kafkastore.WithBrokers("127.0.0.1:1"), WithBatch(0, 1, 0)}},
		"zero concurrency":  {memory.New(), []Option{kafkastore.WithBrokers("127.0.0.1:1"), WithWriteConcurrency(0)}},
		"backoff max < min": {memory.New(), []Option{kafkastore.WithBrokers("127.0.0.1:1"), WithRetryBackoff(time.Second, time.Millisecond)}},
		"zero cap":          {memory.New(), []Option{kafkastore.WithBrokers("127.0.0.1:1"), WithMaxInFlightBytes(0)}},
		"heartbeat>session": {memory.New(), []Option{kafkastore.WithBrokers("127.0.0.1:1"), WithGroupTimeouts(time.Second, time.Second, 2*time.Second)}},
		"zero refresh":      {memory.New(), []Option{kafkastore.WithBrokers("127.0.0.1:1"), WithTopicRefresh(0)}},
	} {
		t.Run(name, func(t *testing.T) {
			p, err := New(tc.primary, tc.opts...)
			if !errors.Is(err, ErrConfig) || p != nil {
				t.Fatalf("New = %v, %v; want ErrConfig", p, err)
			}
		})
	}
	p, err := New(memory.New(), kafkastore.WithBrokers("127.0.0.1:1"))
	if err != nil {
		t.Fatal(err)
	}
	if id := p.cfg.conn.ClientID; !regexp.MustCompile(`^persister-.+-\d+-[0-9a-f]{6}$`).MatchString(id) {
		t.Errorf("default client id %q, want persister-<host>-<pid>-<random>", id)
	}
	q, _ := New(memory.New(), kafkastore.WithBrokers("127.0.0.1:1"))
	if p.cfg.conn.ClientID == q.cfg.conn.ClientID {
		t.Errorf("two persisters share the client id %q", p.cfg.conn.ClientID)
	}
	if p.cfg.groupID != DefaultGroupID || p.cfg.topicPattern.String() != "^completed.*" || p.cfg.deadLetterTopic != DefaultDeadLetterTopic {
		t.Errorf("defaults: group %q pattern %q dlq %q", p.cfg.groupID, p.cfg.topicPattern, p.cfg.deadLetterTopic)
	}
}
