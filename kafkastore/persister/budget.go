package persister

import (
	"context"
	"sync"
)

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
