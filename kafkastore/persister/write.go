package persister

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/go-whisk/activationstore/kafkastore/internal/kafkaconn"
	"github.com/go-whisk/activationstore/store"
)

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
			wait := p.retry.Wait(attempt)
			p.log.Warn("persister write to the primary failed; retrying without committing",
				append(persistRecordAttrs(retry), "attempt", attempt, "backoff", wait, "err", lastErr)...)
			if kafkaconn.Sleep(stop, wait) && ctx.Err() == nil {
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
		err = fmt.Errorf("persister: the primary's StoreBatch returned %d results for %d records", len(res), len(rs))
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
