package kafkaconn

import (
	"context"
	"math/rand/v2"
	"time"
)

// Backoff is the wait between retries: exponential from Min to Max, with
// jitter so that clients that failed together do not retry in step.
type Backoff struct{ Min, Max time.Duration }

// Wait returns the wait before retry number attempt (1, 2, …): a random
// duration between half and all of min(Min·2^(attempt-1), Max).
func (b Backoff) Wait(attempt int) time.Duration {
	d := b.Max
	if attempt < 32 {
		if e := b.Min << max(attempt-1, 0); e > 0 && e < d {
			d = e
		}
	}
	return d/2 + rand.N(d/2+1)
}

// Sleep waits d and reports whether ctx is still live.
func Sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
