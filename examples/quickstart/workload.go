package main

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-whisk/activationstore/examples/controller"
	"github.com/go-whisk/activationstore/examples/invoker"
	"github.com/go-whisk/activationstore/store"
)

type kind int

const (
	blocking     kind = iota // acked with the activation on completed0
	nonBlocking              // completion ack + KafkaStore on completed-others
	byController             // trigger or sequence through KafkaStore
)

var namespaces = []string{"guest", "alice", "bob", "carol"}

// workload produces n activations and remembers them for verification.
type workload struct {
	n        int
	inv      *invoker.Invoker
	ctl      *controller.Controller
	ctlIndex int // the controller the invoker acks to, on completed<ctlIndex>

	done  atomic.Int64
	kinds [3]atomic.Int64

	mu   sync.Mutex
	ids  map[string][]string // namespace → activation ids
	lats []time.Duration
}

func newWorkload(n int, inv *invoker.Invoker, ctl *controller.Controller, ctlIndex int) *workload {
	return &workload{n: n, inv: inv, ctl: ctl, ctlIndex: ctlIndex, ids: map[string][]string{}, lats: make([]time.Duration, 0, n)}
}

func (w *workload) produce(ctx context.Context, workers int) error {
	var next atomic.Int64
	errs := make(chan error, workers)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= w.n {
					return
				}
				if err := w.one(ctx, i); err != nil {
					errs <- fmt.Errorf("activation %d: %w", i, err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	return <-errs
}

func (w *workload) one(ctx context.Context, i int) error {
	ns := namespaces[i%len(namespaces)]
	start := time.Now().Truncate(time.Millisecond)
	k := kind(i % 5 % 3) // 2/5 blocking, 2/5 non-blocking, 1/5 controller
	var (
		id  string
		err error
	)
	began := time.Now()
	switch k {
	case blocking, nonBlocking:
		a := invokerActivation(ns, i, start)
		id = a.ActivationID
		err = w.inv.Complete(ctx, invoker.Job{Controller: w.ctlIndex, Blocking: k == blocking}, a)
	case byController:
		var a *store.Activation
		if i%2 == 0 {
			a, err = w.ctl.FireTrigger(ctx, ns, "tick", json.RawMessage(`{"i":`+fmt.Sprint(i)+`}`),
				[]controller.RuleOutcome{{Rule: ns + "/everyMinute", Action: ns + "/hello", ActivationID: controller.NewActivationID()}}, store.UserContext{})
		} else {
			comp := invokerActivation(ns, i, start)
			a, err = w.ctl.CompleteSequence(ctx, controller.SequenceResult{
				Namespace: ns, Name: "pipeline", Path: ns + "/pipeline", Components: []*store.Activation{comp}, Start: start,
			}, false, store.UserContext{})
		}
		if a != nil {
			id = a.ActivationID
		}
	}
	if err != nil {
		return err
	}
	took := time.Since(began)
	w.kinds[k].Add(1)
	w.done.Add(1)
	w.mu.Lock()
	w.ids[ns] = append(w.ids[ns], id)
	w.lats = append(w.lats, took)
	w.mu.Unlock()
	return nil
}

func invokerActivation(ns string, i int, start time.Time) *store.Activation {
	d := int64(3 + i%40)
	return &store.Activation{
		Namespace: ns, Name: "hello", Subject: ns + "-subject", ActivationID: controller.NewActivationID(),
		Start: start, End: start.Add(time.Duration(d) * time.Millisecond), Duration: &d,
		Response: store.Response{StatusCode: store.StatusSuccess, Result: json.RawMessage(`{"payload":"Hello, world ` + fmt.Sprint(i) + `"}`)},
		Logs:     []string{"2024-01-01T00:00:00.000Z stdout: Hello, world"},
		Version:  store.DefaultVersion,
		Annotations: []store.Annotation{
			{Key: "path", Value: json.RawMessage(`"` + ns + `/hello"`)},
			{Key: "kind", Value: json.RawMessage(`"nodejs:20"`)},
			{Key: "limits", Value: json.RawMessage(`{"concurrency":1,"logs":10,"memory":256,"timeout":60000}`)},
			{Key: "waitTime", Value: json.RawMessage(fmt.Sprint(i % 50))},
		},
	}
}

func (w *workload) latencies() quantiles {
	w.mu.Lock()
	defer w.mu.Unlock()
	return quantilesOf(append([]time.Duration(nil), w.lats...))
}

// verify reads every activation back through s and returns how many are missing.
func (w *workload) verify(ctx context.Context, s store.Store) (missing int, err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for ns, ids := range w.ids {
		n, err := s.Count(ctx, store.Query{Namespace: ns}, store.UserContext{})
		if err != nil {
			return 0, err
		}
		if n != len(ids) {
			return 0, fmt.Errorf("Count(%s) = %d, want %d", ns, n, len(ids))
		}
		listed, err := s.List(ctx, store.Query{Namespace: ns}, store.UserContext{})
		if err != nil {
			return 0, err
		}
		seen := make(map[string]bool, len(listed))
		for _, a := range listed {
			seen[a.ActivationID] = true
		}
		for _, id := range ids {
			if !seen[id] {
				missing++
				continue
			}
			if _, err := s.Get(ctx, ns, id, store.UserContext{}); err != nil {
				return 0, fmt.Errorf("Get(%s, %s): %w", ns, id, err)
			}
		}
	}
	return missing, nil
}
