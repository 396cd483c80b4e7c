package kafkastore

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/go-whisk/activationstore/codec"
	"github.com/go-whisk/activationstore/store"
)

// ErrPersisterRunning is returned by Run when the Persister is running already.
var ErrPersisterRunning = errors.New("kafkastore: Persister.Run called while it is running; use one Persister per Run, or more persisters in one group")

// Persister consumes the activation topics into the primary store, at
// least once: an offset is committed only when every record before it is
// persisted, found already persisted (store.ErrConflict), skipped (it
// carries no activation) or dead-lettered. Persisters sharing a group id
// share the partitions.
//
// Records are written in batches (store.BatchStorer when the primary has
// it, else concurrent Store calls). Failed writes are retried with backoff
// for as long as they fail, without committing: a primary that is down
// stops the persister, it does not lose records. Store levels are not
// applied here: whoever published a record decided already, and a record
// its writer decided not to store (an ack that must carry the activation
// all the same) is marked with HeaderStoreSkip, which the persister
// honours.
type Persister struct {
	primary store.Store
	batch   store.BatchStorer // nil: concurrent Store calls
	cfg     config
	log     *slog.Logger

	dialer    *kafka.Dialer    // consumer group, readers, topic discovery
	transport *kafka.Transport // dead-letter writer and topic creation
	dlqWriter *kafka.Writer
	budget    *persistBudget
	storeSem  chan struct{} // bounds concurrent Store calls

	running atomic.Bool
	ready   atomic.Bool
	stats   persisterCounters
	losses  retentionLosses

	partsMu sync.Mutex
	parts   []*persistPartition // assigned in the current generation

	apis            []persisterAPI // request versions the brokers must accept
	versionsChecked bool           // a broker accepted them, in this Run

	crashForTest bool // Run returns without LeaveGroup, as a killed process would
}

// NewPersister returns a persister of records into primary. WithBrokers is
// required; see the With… options marked for the persister for the rest.
// Nothing connects before Run.
func NewPersister(primary store.Store, opts ...Option) (*Persister, error) {
	if primary == nil {
		return nil, configErr("NewPersister: nil primary store")
	}
	c := config{persisterConfig: defaultPersisterConfig()}
	if err := applyOptions(&c, forPersister, opts); err != nil {
		return nil, err
	}
	if c.clientID == "" {
		c.clientID = defaultPersisterClientID()
	}
	p := &Persister{
		primary: primary,
		cfg:     c,
		log:     c.logger.With("component", "persister", "group", c.groupID, "clientId", c.clientID),
		dialer: &kafka.Dialer{
			ClientID:      c.clientID,
			Timeout:       10 * time.Second,
			DualStack:     true,
			TLS:           c.tls,
			SASLMechanism: c.sasl,
		},
		transport: &kafka.Transport{
			// Set per Run: see Run.
			ClientID:    c.clientID,
			TLS:         c.tls,
			SASL:        c.sasl,
			MetadataTTL: time.Second,
		},
		budget:   newPersistBudget(c.maxInFlightBytes),
		storeSem: make(chan struct{}, c.writeConcurrency),
		apis:     persisterAPIs,
	}
	if b, ok := primary.(store.BatchStorer); ok {
		p.batch = b
	}
	return p, nil
}

// Ready reports whether Run is consuming: it has joined a consumer group
// generation (or found no topic to follow, so has nothing to wait for). It
// stays true through rebalances, and turns false when Run returns. For a
// service's readiness probe.
func (p *Persister) Ready() bool { return p.ready.Load() }

// Run consumes until ctx ends, then shuts down gracefully: it stops
// fetching, lets writes in flight finish for up to 750 ms (or the drain
// timeout, WithDrainTimeout, when shorter), commits what is persisted,
// leaves the group (a dynamic member; a static one, WithGroupInstanceID,
// stays for its restart), and returns nil — within 2 s of ctx's end,
// whatever it was doing: joining, waiting for the group's assignment,
// fetching, retrying a write.
//
// Run keeps going through broker, network and primary failures, logging
// and retrying. It returns an error only when it cannot start: it is
// running already (ErrPersisterRunning), the dead-letter topic can be
// neither found nor created, a broker does not accept the request
// versions kafka-go sends (ErrUnsupportedBroker, a *BrokerVersionError
// naming the request and the fix), which no retry would cure, or another
// live persister took its group instance id (ErrGroupInstanceFenced).
func (p *Persister) Run(ctx context.Context) error {
	if !p.running.CompareAndSwap(false, true) {
		return ErrPersisterRunning
	}
	defer p.running.Store(false)
	defer p.log.Info("persister stopped") // however Run returns: the service relies on it
	p.versionsChecked = false
	defer p.ready.Store(false)

	// The transport's background goroutines (metadata discovery) live as
	// long as its context: end them with Run, even when the brokers are
	// unreachable and a pool was opened but never used.
	transportCtx, stopTransport := context.WithCancel(context.Background())
	defer p.transport.CloseIdleConnections()
	defer stopTransport()
	p.transport.Context = transportCtx

	if err := p.ensureDeadLetterTopic(ctx); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	p.dlqWriter = p.newDeadLetterWriter()
	defer p.dlqWriter.Close()

	p.log.Info("persister running", "pattern", p.cfg.topicPattern.String(),
		"deadLetterTopic", p.cfg.deadLetterTopic, "primaryBatches", p.batch != nil,
		"groupInstanceId", p.cfg.groupInstanceID)
	member := newGroupMember(p)
	if !p.crashForTest {
		defer member.leave(persisterLeaveTimeout)
	}
	idle := false
	for attempt := 1; ctx.Err() == nil; {
		topics, err := p.discoverTopics(ctx)
		switch {
		case ctx.Err() != nil:
		case errors.Is(err, ErrUnsupportedBroker):
			p.log.Error("persister cannot consume from this broker", "err", err)
			return err
		case isAuthError(err):
			p.log.Error("persister cannot authenticate to the Kafka brokers; retrying", "attempt", attempt, "err", err, "hint", authHint)
			persisterSleep(ctx, p.backoff(attempt))
			attempt++
		case err != nil:
			p.log.Warn("persister cannot list topics; retrying", "attempt", attempt, "err", err)
			persisterSleep(ctx, p.backoff(attempt))
			attempt++
		case len(topics) == 0:
			if !idle {
				p.log.Info("persister found no topic matching its pattern; waiting for one",
					"pattern", p.cfg.topicPattern.String(), "refresh", p.cfg.topicRefresh)
				idle = true
			}
			p.ready.Store(true)
			attempt = 1
			persisterSleep(ctx, p.cfg.topicRefresh)
		default:
			idle, attempt = false, 1
			if err := p.consume(ctx, member, topics); err != nil {
				p.log.Error("persister stops", "err", err)
				return err
			}
		}
	}
	return nil
}

// Bounds of a shutdown, so that Run returns within 2 s of its context's
// end whatever it was doing: writes in flight get persisterShutdownDrain
// (or the drain timeout, when shorter), the last commit
// persisterFinalCommitTimeout, the LeaveGroup persisterLeaveTimeout.
const (
	persisterShutdownDrain      = 750 * time.Millisecond
	persisterFinalCommitTimeout = 750 * time.Millisecond
	persisterLeaveTimeout       = 250 * time.Millisecond
)

// consume follows topics in the consumer group until ctx ends or the set of
// matching topics changes; the caller then joins again with the new set.
// It returns an error only when this member was fenced.
func (p *Persister) consume(ctx context.Context, member *groupMember, topics persistedTopics) error {
	gctx, cancel := context.WithCancel(ctx)
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		p.watchTopics(gctx, topics, cancel)
	}()
	defer func() { cancel(); <-watched }()

	p.log.Info("persister following topics", "topics", topics.String())
	for {
		gen, err := member.join(gctx, topics)
		if gctx.Err() != nil {
			return nil
		}
		if err != nil {
			return err
		}
		p.runGeneration(ctx, gctx, member, gen)
		if gen.fenced.Load() {
			return ErrGroupInstanceFenced
		}
	}
}

// watchTopics calls changed and returns when the matching topics or their
// partition counts differ from current.
func (p *Persister) watchTopics(ctx context.Context, current persistedTopics, changed func()) {
	t := time.NewTicker(p.cfg.topicRefresh)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now, err := p.discoverTopics(ctx)
		if err != nil {
			if ctx.Err() == nil {
				p.log.Warn("persister cannot list topics; keeping the current ones", "err", err)
			}
			continue
		}
		if !maps.Equal(now, current) {
			p.log.Info("persister topics changed; rejoining the group",
				"was", current.String(), "now", now.String())
			changed()
			return
		}
	}
}

// persistPartition is one partition assigned in a generation.
type persistPartition struct {
	topic         string
	partition     int
	start         int64 // committed offset, or kafka.FirstOffset
	tracker       *offsetTracker
	highWaterMark atomic.Int64 // -1 unknown
	firstOffset   atomic.Int64 // first offset read; -1 before
	// priorDoubt: offsets, sorted, whose write the previous owner
	// abandoned mid-flight (from the committed offset's metadata).
	priorDoubt []int64
}

// priorInDoubt reports whether the previous owner abandoned a write of
// offset mid-flight.
func (ps *persistPartition) priorInDoubt(offset int64) bool {
	_, ok := slices.BinarySearch(ps.priorDoubt, offset)
	return ok
}

func (p *Persister) setParts(parts []*persistPartition) {
	p.partsMu.Lock()
	p.parts = parts
	p.partsMu.Unlock()
}

// runGeneration consumes the partitions of one generation until it ends
// (rebalance) or ctx ends. runCtx is Run's: its end, rather than a
// rebalance's, shortens the drain.
func (p *Persister) runGeneration(runCtx, ctx context.Context, member *groupMember, gen *generation) {
	defer func() { gen.end(); <-gen.done }()
	g := &persistGeneration{p: p, member: member, gen: gen, runCtx: runCtx, commitNow: make(chan struct{}, 1)}
	var assigned []string
	for _, topic := range slices.Sorted(maps.Keys(gen.assigned)) {
		var ids []string
		for _, id := range slices.Sorted(maps.Keys(gen.assigned[topic])) {
			st := gen.assigned[topic][id]
			ps := &persistPartition{topic: topic, partition: id, start: st.offset, tracker: newOffsetTracker(st.offset)}
			p.log.Debug("persister starts a partition", "generation", gen.id, "topic", topic, "partition", id, "offset", st.offset, "inDoubt", len(st.inDoubt))
			ps.priorDoubt = st.inDoubt
			ps.highWaterMark.Store(-1)
			ps.firstOffset.Store(-1)
			g.parts = append(g.parts, ps)
			ids = append(ids, fmt.Sprint(id))
		}
		if len(ids) > 0 {
			assigned = append(assigned, topic+"["+strings.Join(ids, " ")+"]")
		}
	}
	p.stats.generation.Store(int32(gen.id))
	p.setParts(g.parts)
	defer p.setParts(nil)
	p.ready.Store(true)
	p.log.Info("persister joined a group generation", "generation", gen.id, "member", gen.memberID,
		"partitions", len(g.parts), "assigned", strings.Join(assigned, " "))
	g.run(ctx, gen.ctx)
	p.log.Info("persister left a group generation", "generation", gen.id)
}

// persistGeneration runs the pipeline of one generation: a reader per partition,
// a batcher, writers, a committer.
type persistGeneration struct {
	p         *Persister
	member    *groupMember
	gen       *generation
	runCtx    context.Context
	parts     []*persistPartition
	commitNow chan struct{}
}

func (g *persistGeneration) run(runCtx, genCtx context.Context) {
	p := g.p
	ctx, cancel := context.WithCancel(runCtx)
	defer cancel()
	stop := context.AfterFunc(genCtx, cancel)
	defer stop()
	// Writes may outlive ctx by the drain timeout, to finish a batch.
	wctx, wcancel := context.WithCancel(context.WithoutCancel(runCtx))
	defer wcancel()

	records := make(chan *persistRecord, p.cfg.batchRecords)
	batches := make(chan []*persistRecord)

	var readers, writers sync.WaitGroup
	for _, ps := range g.parts {
		readers.Go(func() { g.read(ctx, ps, records) })
	}
	batched := make(chan struct{})
	go func() {
		defer close(batched)
		defer close(batches)
		g.batchLoop(ctx, records, batches)
	}()
	for range p.cfg.writeConcurrency {
		writers.Go(func() {
			for b := range batches {
				g.write(wctx, ctx, b)
			}
		})
	}
	committed := make(chan struct{})
	go func() {
		defer close(committed)
		g.commitLoop(ctx)
	}()

	<-ctx.Done()
	// Writes in flight may finish: for the drain timeout after a
	// rebalance, for less after Run's end, so that Run returns soon.
	drain := time.AfterFunc(p.cfg.drainTimeout, wcancel)
	defer drain.Stop()
	shorten := context.AfterFunc(g.runCtx, func() { drain.Reset(min(p.cfg.drainTimeout, persisterShutdownDrain)) })
	defer shorten()
	readers.Wait()
	close(records)
	for r := range records { // not batched: abandoned
		g.abandon(r)
		p.budget.release(r.charged)
	}
	<-batched
	writers.Wait()
	<-committed
	// What the writers settled while draining. The generation is still
	// current while the group rebalances, so the commit is accepted.
	for _, ps := range g.parts {
		ps.tracker.closing()
	}
	cctx, ccancel := context.WithTimeout(context.WithoutCancel(runCtx), persisterFinalCommitTimeout)
	defer ccancel()
	g.commit(cctx)
	// Settled and not committed: the next owner reads them again.
	for _, ps := range g.parts {
		p.stats.abandoned.Add(ps.tracker.leftOver())
	}
}

// persistRecord is one record read, on its way to the primary or the
// dead-letter topic.
type persistRecord struct {
	msg     kafka.Message
	ps      *persistPartition
	charged int64 // taken from the in-flight budget

	act        *store.Activation // nil: dead-letter it
	deadReason string
	deadErr    error
	// inDoubt: a write of it failed without a verdict (a timeout, a
	// lost connection, the drain's end), so it may be in the primary.
	inDoubt bool
}

// persistRecordOverhead is the weight of a record beyond its bytes: the
// kafka.Message, the decoded activation's structures, the bookkeeping.
// Measured (TestPersistRecordWeight): a 398-byte record takes 1.6 KiB of
// heap while in flight; 512 bytes, as before, left it charged 1.4 KiB.
const persistRecordOverhead = 1024

// fetchMaxBytes sizes a partition reader's fetches from the in-flight cap.
func (p *Persister) fetchMaxBytes() int {
	return int(min(max(p.cfg.maxInFlightBytes/8, 64<<10), 8<<20))
}

func (g *persistGeneration) read(ctx context.Context, ps *persistPartition, out chan<- *persistRecord) {
	p := g.p
	r := kafka.NewReader(kafka.ReaderConfig{
		Brokers:         p.cfg.brokers,
		Topic:           ps.topic,
		Partition:       ps.partition,
		Dialer:          p.dialer,
		MinBytes:        1,
		MaxBytes:        p.fetchMaxBytes(),
		MaxWait:         500 * time.Millisecond,
		QueueCapacity:   8,
		ReadLagInterval: -1,
		ReadBackoffMin:  p.cfg.retryMin,
		ReadBackoffMax:  max(p.cfg.retryMin, min(p.cfg.retryMax, time.Second)),
		Logger:          persisterKafkaLogger{p.log, slog.LevelDebug},
		ErrorLogger:     persisterKafkaLogger{p.log, slog.LevelWarn},
	})
	defer r.Close()
	if err := r.SetOffset(ps.start); err != nil {
		p.log.Error("persister cannot set the start offset", "topic", ps.topic, "partition", ps.partition,
			"offset", ps.start, "err", err)
		return
	}
	// expected is the next offset to read, when known. kafka-go moves a
	// reader whose offset Kafka deleted to the log start without telling:
	// a committed offset below it, or a jump while reading, is counted.
	expected := ps.start
	if expected >= 0 {
		p.checkRetention(ctx, ps, expected, -1)
	}
	for attempt := 1; ; {
		m, err := r.FetchMessage(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			p.log.Warn("persister cannot read a partition; retrying", "topic", ps.topic,
				"partition", ps.partition, "attempt", attempt, "err", err)
			if !persisterSleep(ctx, p.backoff(attempt)) {
				return
			}
			attempt++
			continue
		}
		attempt = 1
		if expected >= 0 && m.Offset > expected {
			p.checkRetention(ctx, ps, expected, m.Offset)
		}
		expected = m.Offset + 1
		rec := &persistRecord{msg: m, ps: ps}
		charged, err := p.budget.acquire(ctx, persistRecordWeight(&m))
		if err != nil {
			return // not read: the next owner reads it
		}
		rec.charged = charged
		ps.tracker.add(m.Offset)
		p.stats.read.Add(1)
		ps.firstOffset.CompareAndSwap(-1, m.Offset)
		if m.HighWaterMark > ps.highWaterMark.Load() {
			ps.highWaterMark.Store(m.HighWaterMark)
		}
		if g.skipMarked(rec) { // HeaderStoreSkip: see storeskip.go
			p.budget.release(rec.charged)
			continue
		}
		if !p.classify(rec) {
			g.settle(rec, endSkipped)
			p.budget.release(rec.charged)
			continue
		}
		select {
		case out <- rec:
		case <-ctx.Done():
			g.abandon(rec)
			p.budget.release(rec.charged)
			return
		}
	}
}

// classify decodes a record. It returns false for a record with nothing to
// persist; otherwise it sets either the activation or the dead-letter reason.
func (p *Persister) classify(r *persistRecord) bool {
	m, err := codec.Decode(r.msg.Value)
	if err != nil {
		r.deadReason, r.deadErr = DeadLetterMalformed, err
		return true
	}
	a := m.Activation()
	if a == nil {
		return false // CompletionMessage, or a result shrunk to its id
	}
	if err := store.ValidateActivation(a); err != nil {
		r.deadReason, r.deadErr = DeadLetterInvalid, err
		return true
	}
	r.act = a
	return true
}

// batchLoop groups records into batches bounded by count and bytes. A
// free writer takes at once what has arrived (after the optional batch
// wait); while every writer is busy, the batch grows up to its limits. So a
// record is written as soon as it is read at light load, and batches are
// full under backlog, without a timer on every record.
func (g *persistGeneration) batchLoop(ctx context.Context, in <-chan *persistRecord, out chan<- []*persistRecord) {
	cfg := &g.p.cfg
	var (
		cur   []*persistRecord
		bytes int
		timer = time.NewTimer(time.Hour)
		// ripe: a writer may take cur now. Without a batch wait, as soon
		// as it holds a record; with one, when the wait is over.
		ripe bool
	)
	timer.Stop()
	defer timer.Stop()
	abandon := func() {
		for _, r := range cur {
			g.abandon(r)
			g.p.budget.release(r.charged)
		}
		cur = nil
	}
	full := func() bool { return len(cur) >= cfg.batchRecords || bytes >= cfg.batchBytes }
	// add appends r, first sending cur when r would overflow it; false
	// when ctx ended meanwhile (r is released).
	add := func(r *persistRecord) bool {
		n := len(r.msg.Value)
		if len(cur) > 0 && bytes+n > cfg.batchBytes {
			select {
			case out <- cur:
				cur, bytes, ripe = nil, 0, false
			case <-ctx.Done():
				g.abandon(r)
				g.p.budget.release(r.charged)
				return false
			}
		}
		cur = append(cur, r)
		bytes += n
		if len(cur) == 1 {
			if cfg.batchWait > 0 {
				timer.Reset(cfg.batchWait)
			} else {
				ripe = true
			}
		}
		return true
	}
	// take adds a received record; false when the loop must end (input
	// closed, or ctx ended), with everything held released.
	take := func(r *persistRecord, ok bool) bool {
		if ok && add(r) {
			return true
		}
		abandon()
		return false
	}
	for {
		var send chan<- []*persistRecord
		var recv <-chan *persistRecord = in
		if ripe || full() {
			send = out
		}
		if full() {
			recv = nil // backpressure: wait for a writer
		}
		select {
		case <-ctx.Done():
			abandon()
			return
		case <-timer.C:
			ripe = len(cur) > 0
		case send <- cur:
			cur, bytes, ripe = nil, 0, false
			timer.Stop()
		case r, ok := <-recv:
			if !take(r, ok) {
				return
			}
			// Take what else has arrived already, so that a free writer
			// gets it in one batch rather than record by record.
			for more := true; more && !full(); {
				select {
				case r, ok := <-in:
					if !take(r, ok) {
						return
					}
				default:
					more = false
				}
			}
		}
	}
}

// write persists one batch and dead-letters its poison records, settling
// every record that is done. ctx ends a drain timeout after the generation;
// no write is retried after stop ends. The batch's records are released
// from the in-flight budget together, when the batch is done with.
func (g *persistGeneration) write(ctx, stop context.Context, batch []*persistRecord) {
	p := g.p
	defer func() {
		for _, r := range batch {
			p.budget.release(r.charged)
		}
	}()
	start := time.Now()
	var persist, dead []*persistRecord
	for _, r := range batch {
		if r.act != nil {
			persist = append(persist, r)
		} else {
			dead = append(dead, r)
		}
	}
	dead = append(dead, p.persist(ctx, stop, persist, g.settle, g.abandon)...)
	if p.deadLetter(ctx, dead) {
		for _, r := range dead {
			g.settle(r, endDeadLettered)
		}
	} else {
		for _, r := range dead {
			g.abandon(r) // read again by the next owner
		}
	}
	p.stats.batchDone(len(batch), time.Since(start))
}

// persist writes rs to the primary, retrying transient failures until
// stop or ctx ends. It settles the records persisted or found already
// persisted, abandons (unsettled) those still failing at the end, and
// returns those the primary rejects as invalid.
//
// A record found already persisted counts as persisted, not as a
// conflict, when an earlier write of it may have landed: a failed attempt
// here, or one its previous owner abandoned mid-flight (see
// offsetTracker.abandon).
func (p *Persister) persist(ctx, stop context.Context, rs []*persistRecord, settle func(*persistRecord, ending), abandon func(*persistRecord)) (invalid []*persistRecord) {
	pending := rs
	for attempt := 1; len(pending) > 0; attempt++ {
		errs := p.storeAll(ctx, pending)
		now := time.Now()
		var retry []*persistRecord
		var lastErr error
		for i, r := range pending {
			switch err := errs[i]; {
			case err == nil:
				p.stats.age.observe(now.Sub(r.msg.Time))
				settle(r, endPersisted)
			case errors.Is(err, store.ErrConflict):
				if r.inDoubt || r.ps.priorInDoubt(r.msg.Offset) {
					settle(r, endRedelivered) // our earlier write landed
				} else {
					settle(r, endConflict)
				}
			case errors.Is(err, store.ErrInvalid):
				r.deadReason, r.deadErr = DeadLetterInvalid, err
				invalid = append(invalid, r)
			default:
				r.inDoubt = true
				retry = append(retry, r)
				lastErr = err
			}
		}
		if len(retry) == 0 {
			break
		}
		if ctx.Err() == nil && stop.Err() == nil {
			p.stats.retries.Add(1)
			wait := p.backoff(attempt)
			p.log.Warn("persister write to the primary failed; retrying without committing",
				append(persistRecordAttrs(retry), "attempt", attempt, "backoff", wait, "err", lastErr)...)
			if persisterSleep(stop, wait) && ctx.Err() == nil {
				pending = retry
				continue
			}
		}
		p.log.Warn("persister abandons records on shutdown or rebalance; they stay uncommitted",
			append(persistRecordAttrs(retry), "err", lastErr)...)
		for _, r := range retry {
			abandon(r)
		}
		break
	}
	return invalid
}

// persistRecordAttrs names the records of a failed write for the logs.
func persistRecordAttrs(rs []*persistRecord) []any {
	const shown = 10
	ids := make([]string, 0, min(len(rs), shown))
	where := make([]string, 0, min(len(rs), shown))
	for _, r := range rs[:min(len(rs), shown)] {
		ids = append(ids, r.act.ActivationID)
		where = append(where, fmt.Sprintf("%s/%d@%d", r.msg.Topic, r.msg.Partition, r.msg.Offset))
	}
	return []any{
		"records", len(rs),
		"activationIds", strings.Join(ids, ","),
		"offsets", strings.Join(where, ","),
		"topic", rs[0].msg.Topic, "partition", rs[0].msg.Partition, "offset", rs[0].msg.Offset,
	}
}

// storeAll writes rs and returns an error per record.
func (p *Persister) storeAll(ctx context.Context, rs []*persistRecord) []error {
	if p.batch == nil {
		return p.storeEach(ctx, rs)
	}
	acts := make([]*store.Activation, len(rs))
	for i, r := range rs {
		acts[i] = r.act
	}
	res, err := p.batch.StoreBatch(ctx, acts, store.UserContext{})
	if err == nil && len(res) == len(rs) {
		errs := make([]error, len(rs))
		for i := range res {
			errs[i] = res[i].Err
		}
		return errs
	}
	if err == nil {
		err = fmt.Errorf("kafkastore: the primary's StoreBatch returned %d results for %d records", len(res), len(rs))
	} else if len(rs) > 1 && (errors.Is(err, store.ErrInvalid) || errors.Is(err, store.ErrConflict)) {
		// A verdict on one record failed the whole batch: find which.
		return p.storeEach(ctx, rs)
	}
	errs := make([]error, len(rs))
	for i := range errs {
		errs[i] = err
	}
	return errs
}

// storeEach writes rs with concurrent Store calls, at most the write
// concurrency at once across the persister.
func (p *Persister) storeEach(ctx context.Context, rs []*persistRecord) []error {
	errs := make([]error, len(rs))
	var wg sync.WaitGroup
	for i, r := range rs {
		select {
		case p.storeSem <- struct{}{}:
		case <-ctx.Done():
			errs[i] = ctx.Err()
			continue
		}
		wg.Go(func() {
			defer func() { <-p.storeSem }()
			_, errs[i] = p.primary.Store(ctx, r.act, store.UserContext{})
		})
	}
	wg.Wait()
	return errs
}

// settle marks r done in its partition. Its budget is released by whoever
// holds it.
func (g *persistGeneration) settle(r *persistRecord, e ending) {
	if r.ps.tracker.settle(r.msg.Offset, e) {
		select {
		case g.commitNow <- struct{}{}:
		default:
		}
	}
}

// abandon counts r as read but left for the partition's next owner, and
// remembers it when a write of it may have landed.
func (g *persistGeneration) abandon(r *persistRecord) {
	g.p.stats.abandoned.Add(1)
	if r.inDoubt || r.ps.priorInDoubt(r.msg.Offset) {
		r.ps.tracker.abandonInDoubt(r.msg.Offset)
	}
}

// persistRecordWeight is what a record read counts against the in-flight
// budget: two and a half times its bytes (the raw record, kept for
// dead-lettering, and the decoded activation, whose log lines take a
// string header and a rounded-up allocation each) and the overhead.
// TestPersistRecordWeight measures the heap it stands for.
func persistRecordWeight(m *kafka.Message) int64 {
	n := int64(len(m.Value) + len(m.Key))
	for _, h := range m.Headers {
		n += int64(len(h.Key) + len(h.Value))
	}
	return 2*n + n/2 + persistRecordOverhead
}

// commitLoop commits as the watermarks move, and periodically.
func (g *persistGeneration) commitLoop(ctx context.Context) {
	t := time.NewTicker(g.p.cfg.commitInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-g.commitNow:
		case <-t.C:
		}
		g.commit(g.commitContext())
	}
}

// commitContext bounds a commit of the commit loop. A commit is not
// cancelled by the generation's end: one cancelled in flight could reach
// the coordinator after the generation's final commit, and set the
// committed offset back. Only Run's end shortens it.
func (g *persistGeneration) commitContext() context.Context {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(g.runCtx), 10*time.Second)
	stop := context.AfterFunc(g.runCtx, func() {
		time.AfterFunc(persisterFinalCommitTimeout, cancel)
	})
	context.AfterFunc(ctx, func() { stop() })
	return ctx
}

// commit commits every partition's watermark that moved, with the offsets
// left in doubt above it as the commit's metadata.
func (g *persistGeneration) commit(ctx context.Context) {
	offsets := map[string][]kafka.OffsetCommit{}
	type commit struct {
		ps   *persistPartition
		off  int64
		meta string
	}
	var done []commit
	for _, ps := range g.parts {
		if off, meta, ok := ps.tracker.toCommit(); ok {
			offsets[ps.topic] = append(offsets[ps.topic], kafka.OffsetCommit{Partition: ps.partition, Offset: off, Metadata: meta})
			done = append(done, commit{ps, off, meta})
		}
	}
	if len(done) == 0 {
		return
	}
	if err := g.member.commit(ctx, g.gen, offsets); err != nil {
		g.p.stats.commitErrors.Add(1)
		g.p.log.Warn("persister cannot commit offsets; they will be committed later or read again",
			"generation", g.gen.id, "err", err)
		return
	}
	g.p.stats.commits.Add(1)
	if g.p.log.Enabled(ctx, slog.LevelDebug) {
		g.p.log.Debug("persister committed offsets", "generation", g.gen.id, "offsets", fmt.Sprint(offsets))
	}
	for _, c := range done {
		g.p.stats.ended(c.ps.tracker.committedAt(c.off, c.meta))
	}
}

// backoff is the wait before retry number attempt: exponential from the
// minimum to the maximum, with jitter so that persisters do not retry in
// step.
func (p *Persister) backoff(attempt int) time.Duration {
	d := p.cfg.retryMax
	if attempt < 32 {
		if e := p.cfg.retryMin << (attempt - 1); e > 0 && e < d {
			d = e
		}
	}
	return d/2 + rand.N(d/2+1)
}

// persisterSleep waits d and reports whether ctx is still live.
func persisterSleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// persistBudget bounds the bytes of records in flight.
type persistBudget struct {
	mu         sync.Mutex
	limit      int64
	used, peak int64
	freed      chan struct{} // closed and replaced on every release
}

func newPersistBudget(limit int64) *persistBudget {
	return &persistBudget{limit: limit, freed: make(chan struct{})}
}

// acquire takes n bytes, waiting for room; a request above the limit takes
// the whole limit. It returns what it took.
func (b *persistBudget) acquire(ctx context.Context, n int64) (int64, error) {
	n = min(n, b.limit)
	for {
		b.mu.Lock()
		if b.used+n <= b.limit {
			b.used += n
			b.peak = max(b.peak, b.used)
			b.mu.Unlock()
			return n, nil
		}
		freed := b.freed
		b.mu.Unlock()
		select {
		case <-freed:
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
}

func (b *persistBudget) release(n int64) {
	if n == 0 {
		return
	}
	b.mu.Lock()
	b.used -= n
	close(b.freed)
	b.freed = make(chan struct{})
	b.mu.Unlock()
}

func (b *persistBudget) usage() (used, peak int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.used, b.peak
}

// persisterKafkaLogger sends kafka-go's log lines to slog.
type persisterKafkaLogger struct {
	log   *slog.Logger
	level slog.Level
}

func (l persisterKafkaLogger) Printf(format string, args ...any) {
	ctx := context.Background()
	if !l.log.Enabled(ctx, min(l.level, slog.LevelDebug)) {
		return
	}
	msg := strings.TrimSpace(fmt.Sprintf(format, args...))
	level := l.level
	if strings.Contains(msg, "operation was canceled") || strings.Contains(msg, context.Canceled.Error()) {
		level = slog.LevelDebug // a reader stopped by a rebalance or shutdown
	}
	l.log.Log(ctx, level, "kafka-go: "+msg)
}
