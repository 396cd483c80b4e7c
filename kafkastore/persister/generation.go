package persister

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

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
