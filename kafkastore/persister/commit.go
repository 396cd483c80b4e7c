package persister

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/segmentio/kafka-go"
)

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
