package persister

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/go-whisk/activationstore/codec"
	"github.com/go-whisk/activationstore/internal/activationtest"
	"github.com/go-whisk/activationstore/internal/kafkatest"
	"github.com/go-whisk/activationstore/kafkastore"
	"github.com/go-whisk/activationstore/primary/memory"
	"github.com/go-whisk/activationstore/store"
)

// landsLatePrimary stores every batch, but for chosen activations (the
// first time only) does not say so: for "late" ones it answers with a
// transient error after the write, as a timed-out request whose write
// landed; for "hang" ones it waits for the writer to give up (its context
// to end) and then fails, as a write abandoned mid-flight.
type landsLatePrimary struct {
	memStore
	mu         sync.Mutex
	late, hang map[string]bool
	hanging    chan struct{} // closed when a hang begins
}

func (l *landsLatePrimary) StoreBatch(ctx context.Context, as []*store.Activation, uc store.UserContext) ([]store.BatchResult, error) {
	res, err := l.memStore.StoreBatch(ctx, as, uc)
	if err != nil {
		return res, err
	}
	l.mu.Lock()
	var late, hang bool
	for _, a := range as {
		late = late || l.late[a.ActivationID]
		hang = hang || l.hang[a.ActivationID]
		delete(l.late, a.ActivationID)
		delete(l.hang, a.ActivationID)
	}
	l.mu.Unlock()
	if hang {
		close(l.hanging)
		<-ctx.Done()
		return nil, fmt.Errorf("%w: gave up waiting: %w", errPrimaryDown, ctx.Err())
	}
	if late {
		return nil, fmt.Errorf("%w: reply lost", errPrimaryDown)
	}
	return res, nil
}

// Every record read ends in exactly one of persisted, conflict (a
// duplicate), skipped (no activation), store-skipped and dead-lettered,
// or is abandoned to the next owner; across rebalances and restarts the
// group's endings add up to the records published, each once. A write
// whose reply was lost, retried, and a write abandoned on shutdown and
// redelivered to another persister, both count as persisted, not as
// conflicts.
func TestPersisterAccountingAddsUp(t *testing.T) {
	b := kafkatest.Start(t)
	topic := kafkatest.Topic(t, "completed")
	const partitions = 3
	b.CreateTopic(t, topic, partitions, nil)
	group := kafkatest.Topic(t, "group")
	prim := &landsLatePrimary{memStore: memory.New(), late: map[string]bool{}, hang: map[string]bool{}, hanging: make(chan struct{})}
	var all []*Persister
	newP := func() (*Persister, func()) {
		p := newTestPersister(t, b, prim, WithTopicPattern(exactTopics(topic)), WithGroupID(group),
			kafkastore.WithClientID(fmt.Sprintf("acct-%d", len(all))), WithDrainTimeout(500*time.Millisecond))
		all = append(all, p)
		return p, runPersister(t, p)
	}

	var published int // records
	var activations []*store.Activation
	var msgs []kafka.Message
	add := func(v []byte, headers ...kafka.Header) {
		msgs = append(msgs, kafka.Message{Value: v, Headers: headers})
		published++
	}
	activation := func() *store.Activation {
		a := activationtest.New("acct")
		activations = append(activations, a)
		return a
	}
	flush := func() {
		t.Helper()
		w := &kafka.Writer{Addr: kafka.TCP(b.Addr()), Topic: topic, Balancer: &kafka.RoundRobin{},
			RequiredAcks: kafka.RequireAll, BatchTimeout: time.Millisecond}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := w.WriteMessages(ctx, msgs...); err != nil {
			t.Fatalf("produce: %v", err)
		}
		_ = w.Close()
		msgs = nil
	}
	const (
		dups, poison, completions, storeSkips, late = 3, 4, 5, 6, 2
	)
	mixed := func() {
		for range 60 {
			add(resultMessage(t, activation()))
		}
		for range dups {
			a := activation()
			add(resultMessage(t, a))
			add(resultMessage(t, a)) // published twice
		}
		for i := range poison {
			add(fmt.Appendf(nil, "not an activation %d", i))
		}
		for range completions {
			a := activationtest.New("acct")
			v, err := codec.Marshal(&codec.CompletionMessage{TransID: codec.TransactionID{ID: "tid", Start: a.Start}, ActivationID: a.ActivationID,
				Instance: codec.InstanceID{Instance: 0, UserMemory: "1024 MB"}})
			if err != nil {
				t.Fatal(err)
			}
			add(v)
		}
		for range storeSkips {
			add(resultMessage(t, activationtest.New("acct")), kafka.Header{Key: kafkastore.HeaderStoreSkip, Value: []byte(kafkastore.StoreSkipUser)})
		}
	}

	// Two persisters; the second joins while the first persists.
	_, stopA := newP()
	mixed()
	flush()
	_, stopB := newP()
	waitCommittedToEnd(t, b, group, topic, partitions)

	// Writes whose reply is lost, retried: found stored.
	for range late {
		a := activation()
		prim.mu.Lock()
		prim.late[a.ActivationID] = true
		prim.mu.Unlock()
		add(resultMessage(t, a))
	}
	flush()
	waitCommittedToEnd(t, b, group, topic, partitions)

	// A write hangs; the group stops (a restart of every persister): the
	// write is abandoned mid-flight, and its record redelivered to the
	// next persister, which finds it stored.
	hung := activation()
	prim.mu.Lock()
	prim.hang[hung.ActivationID] = true
	prim.mu.Unlock()
	add(resultMessage(t, hung))
	flush()
	select {
	case <-prim.hanging:
	case <-time.After(30 * time.Second):
		t.Fatal("the hanging write never began")
	}
	stopA()
	stopB()
	_, stopC := newP()
	mixed()
	flush()
	_, stopD := newP() // a rebalance
	mixed()
	flush()
	waitCommittedToEnd(t, b, group, topic, partitions)
	stopC()
	stopD()

	var sum statsSum
	for i, p := range all {
		st := p.Stats()
		checkStatsAddUp(t, fmt.Sprintf("persister %d", i), st)
		sum.add(st)
	}
	t.Logf("published %d records; group: read %d, persisted %d (redelivered %d), conflicts %d, skipped %d, store-skipped %d, dead-lettered %d, abandoned %d",
		published, sum.read, sum.persisted, sum.redelivered, sum.conflicts, sum.skipped, sum.storeSkipped, sum.deadLettered, sum.abandoned)
	if sum.endings() != int64(published) {
		t.Errorf("the group ended %d records, want the %d published, each once", sum.endings(), published)
	}
	distinct := int64(prim.Len())
	for _, c := range []struct {
		what      string
		got, want int64
	}{
		{"persisted", sum.persisted, distinct},
		{"conflicts", sum.conflicts, 3 * dups},
		{"dead-lettered", sum.deadLettered, 3 * poison},
		{"skipped", sum.skipped, 3 * completions},
		{"store-skipped", sum.storeSkipped, 3 * storeSkips},
		{"redelivered (late and abandoned writes found stored)", sum.redelivered, late + 1},
	} {
		if c.got != c.want {
			t.Errorf("%s: %d, want %d", c.what, c.got, c.want)
		}
	}
	if sum.abandoned < 1 {
		t.Errorf("abandoned %d, want at least the hung write's record", sum.abandoned)
	}
	checkAllStored(t, prim, "acct", dedupe(activations))
}

func dedupe(as []*store.Activation) []*store.Activation {
	seen := map[string]bool{}
	var out []*store.Activation
	for _, a := range as {
		if !seen[a.ActivationID] {
			seen[a.ActivationID] = true
			out = append(out, a)
		}
	}
	return out
}
