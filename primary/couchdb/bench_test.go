package couchdb_test

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/go-whisk/activationstore/codec"
	"github.com/go-whisk/activationstore/internal/couchtest"
	"github.com/go-whisk/activationstore/primary/couchdb"
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

// BenchmarkWriteQuorum measures the cost of waiting for every copy
// (WriteAll, the default) against a majority (WriteMajority) on the
// cluster (COUCHTEST=cluster gives it as the shared server; else a cluster
// is started for it): the latency of one Store, and the docs/s of a drain
// as the persister writes — StoreBatch of 500 documents, 4 at once. The
// settings alternate every iteration, each on a database of its own.
//
//	go test -run '^$' -bench WriteQuorum -benchtime 5x ./primary/couchdb
func BenchmarkWriteQuorum(b *testing.B) {
	const stores, batch, writers = 100, 500, 4
	base := couchtest.ClusterURLs(b)[0]
	ctx := context.Background()
	type setting struct {
		name    string
		s       *couchdb.Store
		latency []time.Duration
		docs    int
		took    time.Duration
	}
	settings := []*setting{{name: "all"}, {name: "majority"}}
	for _, st := range settings {
		q := couchdb.WriteAll
		if st.name == "majority" {
			q = couchdb.WriteMajority
		}
		db := couchtest.DBName(b)
		// A 3-node cluster on a shared machine can take longer than the
		// default 30 s for 500 documents on every copy.
		s, err := couchdb.New(ctx, base, db, couchdb.WithWriteQuorum(q), couchdb.WithTimeout(3*time.Minute))
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = s.Close(); _ = couchtest.DeleteDB(context.Background(), base, db) })
		st.s = s
	}
	iter := 0
	for b.Loop() {
		for k := range settings {
			st := settings[(iter+k)%len(settings)]
			for range stores {
				a := activation("wq", "act", time.Now().UnixMilli())
				t0 := time.Now()
				if _, err := st.s.Store(ctx, a, uc); err != nil {
					b.Fatal(err)
				}
				st.latency = append(st.latency, time.Since(t0))
			}
			var wg sync.WaitGroup
			errs := make(chan error, writers)
			t0 := time.Now()
			for range writers {
				wg.Go(func() {
					for range 2 {
						as := make([]*store.Activation, batch)
						for i := range as {
							as[i] = activation("wq", "act", time.Now().UnixMilli())
						}
						res, err := st.s.StoreBatch(ctx, as, uc)
						if err == nil {
							for _, r := range res {
								if r.Err != nil {
									err = r.Err
									break
								}
							}
						}
						if err != nil {
							errs <- err
							return
						}
					}
				})
			}
			wg.Wait()
			st.took += time.Since(t0)
			st.docs += writers * 2 * batch
			close(errs)
			if err := <-errs; err != nil {
				b.Fatal(err)
			}
		}
		iter++
	}
	for _, st := range settings {
		slices.Sort(st.latency)
		var sum time.Duration
		for _, l := range st.latency {
			sum += l
		}
		b.ReportMetric(float64(sum.Microseconds())/float64(len(st.latency))/1000, "store-ms-"+st.name)
		b.ReportMetric(float64(st.latency[len(st.latency)*99/100].Microseconds())/1000, "store-p99-ms-"+st.name)
		b.ReportMetric(float64(st.docs)/st.took.Seconds(), "drain-docs/s-"+st.name)
	}
	b.ReportMetric(0, "ns/op")
}
