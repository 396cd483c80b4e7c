package couchdb

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

func TestWinnerIsCouchDBs(t *testing.T) {
	assert.Equal(t, "", winner(nil))
	assert.Equal(t, "", winner([]revision{{rev: "2-aa", deleted: true}}))
	assert.Equal(t, "1-bb", winner([]revision{{rev: "1-aa"}, {rev: "1-bb"}}))
	assert.Equal(t, "1-aa", winner([]revision{{rev: "1-aa"}, {rev: "3-ff", deleted: true}}), "deleted leaves never win")
	assert.Equal(t, "10-aa", winner([]revision{{rev: "9-ff"}, {rev: "10-aa"}}), "positions compare as numbers")
}

// Writers that each see some of a document's revisions and delete every one
// but their winner never delete them all: the greatest revision is nobody's
// loser.
func TestWinnersNeverDeleteEverything(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for round := range 2000 {
		all := make([]revision, 1+rng.IntN(5))
		for i := range all {
			all[i] = revision{rev: fmt.Sprintf("%d-%032x", 1+rng.IntN(3), rng.Uint64())}
		}
		deleted := map[string]bool{}
		for range 1 + rng.IntN(4) { // writers, each seeing a subset
			var seen []revision
			for _, r := range all {
				if rng.IntN(2) == 0 {
					seen = append(seen, r)
				}
			}
			keep := winner(seen)
			for _, r := range seen {
				if r.rev != keep {
					deleted[r.rev] = true
				}
			}
		}
		assert.False(t, deleted[winner(all)], "round %d: the greatest revision was deleted", round)
	}
}

func TestIDLocksSerialiseOneID(t *testing.T) {
	var l idLocks
	var inside, most atomic.Int32
	var wg sync.WaitGroup
	for i := range 32 {
		wg.Go(func() {
			id := "a"
			if i%2 == 1 {
				id = fmt.Sprintf("other-%d", i)
			}
			unlock, err := l.lock(context.Background(), id)
			if !assert.NoError(t, err) {
				return
			}
			if id == "a" {
				n := inside.Add(1)
				for {
					m := most.Load()
					if n <= m || most.CompareAndSwap(m, n) {
						break
					}
				}
				time.Sleep(time.Millisecond)
				inside.Add(-1)
			}
			unlock()
		})
	}
	wg.Wait()
	assert.EqualValues(t, 1, most.Load(), "one writer of a document at a time")
	assert.Empty(t, l.m, "no lock left behind")

	unlock, err := l.lock(context.Background(), "b")
	assert.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	_, err = l.lock(ctx, "b")
	assert.ErrorIs(t, err, context.DeadlineExceeded, "a waiter gives up with its context")
	unlock()
	assert.Empty(t, l.m)
}
