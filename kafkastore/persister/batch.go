package persister

import (
	"context"
	"time"
)

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
