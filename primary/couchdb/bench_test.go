package couchdb_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/go-whisk/activationstore/codec"
	"github.com/go-whisk/activationstore/internal/couchtest"
	"github.com/go-whisk/activationstore/store"
)

// BenchmarkStoreVsBatch measures, in one run on one database, the docs/s of
// 100 records written by sequential Store calls, by 16 concurrent Store
// callers, by one StoreBatch, and by a raw _bulk_docs request of the same
// documents (the baseline the driver's overhead is judged against). The
// phases rotate order every iteration, since the server is slower right
// after a burst.
//
//	go test -run '^$' -bench StoreVsBatch -benchtime 40x ./primary/couchdb
func BenchmarkStoreVsBatch(b *testing.B) {
	const n, workers = 100, 16
	s, db := newStore(b)
	base := couchtest.URL(b)
	ctx := context.Background()

	phases := []struct {
		unit  string
		write func(as []*store.Activation) error
		took  time.Duration
	}{
		{unit: "store-docs/s", write: func(as []*store.Activation) error {
			for _, a := range as {
				if _, err := s.Store(ctx, a, uc); err != nil {
					return err
				}
			}
			return nil
		}},
		{unit: "store16-docs/s", write: func(as []*store.Activation) error {
			var wg sync.WaitGroup
			errs := make(chan error, len(as))
			next := make(chan *store.Activation)
			for range workers {
				wg.Go(func() {
					for a := range next {
						if _, err := s.Store(ctx, a, uc); err != nil {
							errs <- err
						}
					}
				})
			}
			for _, a := range as {
				next <- a
			}
			close(next)
			wg.Wait()
			close(errs)
			return <-errs
		}},
		{unit: "batch-docs/s", write: func(as []*store.Activation) error {
			res, err := s.StoreBatch(ctx, as, uc)
			if err != nil {
				return err
			}
			for _, r := range res {
				if r.Err != nil {
					return r.Err
				}
			}
			return nil
		}},
		{unit: "raw-bulk-docs/s", write: func(as []*store.Activation) error {
			docs := make([][]byte, len(as))
			for i, a := range as {
				var err error
				if docs[i], err = codec.MarshalDocument(a, time.Now()); err != nil {
					return err
				}
			}
			return couchtest.BulkDocs(ctx, base, db, docs)
		}},
	}
	iter := 0
	for b.Loop() {
		for k := range phases {
			p := &phases[(iter+k)%len(phases)]
			as := make([]*store.Activation, n)
			for i := range as {
				as[i] = activation("bench", "act", time.Now().UnixMilli())
			}
			t0 := time.Now()
			if err := p.write(as); err != nil {
				b.Fatal(err)
			}
			p.took += time.Since(t0)
		}
		iter++
	}
	rate := make(map[string]float64, len(phases))
	for _, p := range phases {
		rate[p.unit] = float64(n*b.N) / p.took.Seconds()
		b.ReportMetric(rate[p.unit], p.unit)
	}
	b.ReportMetric(rate["batch-docs/s"]/rate["store-docs/s"], "batch/store")
	b.ReportMetric(rate["batch-docs/s"]/rate["store16-docs/s"], "batch/store16")
	b.ReportMetric(rate["batch-docs/s"]/rate["raw-bulk-docs/s"], "batch/raw")
	b.ReportMetric(0, "ns/op") // per phase above
}
