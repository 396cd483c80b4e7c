//go:build linux

package kafkastore_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/go-whisk/activationstore/internal/activationtest"
	"github.com/go-whisk/activationstore/internal/kafkatest"
	"github.com/go-whisk/activationstore/kafkastore"
	"github.com/go-whisk/activationstore/store"
)

// BenchmarkStoreSpool measures Store with WithSpool against two baselines
// measured in the same run, taking turns in 8 rounds:
//
//	spool    kafkastore.Store, WithSpool in b.TempDir() (WithSpoolMaxBytes 4 GiB)
//	nospool  kafkastore.Store without a spool, on the same broker (kafkatest.Start)
//	ceiling  what this disk allows a spool: the same frames (the spool's
//	         28-byte header and the record as the Store encodes it) written
//	         to a preallocated file by as many goroutines, each group of
//	         queued writers sharing one write and one fdatasync
//
// in sub-benchmarks callers=1|16|64 × record=1KiB|10KiB|1MiB (the size of
// the Kafka record's value). Metrics: p50 and p99 latency of each (µs),
// records/s of each, spool/ceiling and spool/nospool (records/s), records
// per fdatasync and the fdatasync p50 of the spool and of the ceiling, and
// spool-drained-records/s: the records over the time from a spool phase's
// start until the publisher had every record in Kafka (below
// spool-records/s, a spool under that load fills). The goals: spool/ceiling
// ≥ 0.8; spool/nospool ≥ 1 at 64 callers; spool p99 ≤ 5 ms at 64 callers
// with 1 KiB records.
//
//	go test ./kafkastore -run '^$' -bench 'StoreSpool/.*/record=1(0)?KiB' -benchtime 2000x
//	go test ./kafkastore -run '^$' -bench 'StoreSpool/.*/record=1MiB' -benchtime 640x
//
// Give -benchtime at least 16 times the callers, so that every round
// keeps them all busy. The broker keeps every record in memory (kfake)
// and the disk sees each record twice (spool and ceiling): at 640x, 1 MiB
// records take 1.3 GiB of memory and 1.3 GiB of writes; the spool's
// directory holds at most the backlog plus a 64 MiB segment, the
// ceiling's file one round's records. b.TempDir must be on a disk (not
// tmpfs, where fdatasync is free): set TMPDIR when it is not.
func BenchmarkStoreSpool(b *testing.B) {
	for _, callers := range []int{1, 16, 64} {
		for _, r := range []struct {
			name string
			size int
		}{{"1KiB", 1 << 10}, {"10KiB", 10 << 10}, {"1MiB", 1 << 20}} {
			b.Run(fmt.Sprintf("callers=%d/record=%s", callers, r.name), func(b *testing.B) {
				benchStoreSpool(b, callers, r.size)
			})
		}
	}
}

// spoolFrameHeader is the size of the spool's frame header
// (kafkastore/internal/spool, frame.go).
const spoolFrameHeader = 28

func benchStoreSpool(b *testing.B, callers, size int) {
	ctx := context.Background()
	broker := kafkatest.Start(b)
	dir := b.TempDir()
	checkOnDisk(b, dir)
	spooled := benchStore(b, broker, kafkastore.WithSpool(filepath.Join(dir, "spool"), kafkastore.WithSpoolMaxBytes(4<<30)))
	direct := benchStore(b, broker)
	for _, s := range []*kafkastore.Store{spooled, direct} {
		if _, err := s.Store(ctx, activationtest.New("guest"), store.UserContext{}); err != nil {
			b.Fatal(err)
		}
	}
	waitSpoolEmpty(b, spooled)

	as := sizedActivations(b, b.N, size)
	topic := kafkatest.Topic(b, "completed")
	frames := make([][]byte, b.N)
	for i, a := range as {
		p, err := kafkastore.SpoolPayload(topic, a)
		if err != nil {
			b.Fatal(err)
		}
		frames[i] = append(make([]byte, spoolFrameHeader, spoolFrameHeader+len(p)), p...)
	}
	var ceiling *groupFile
	const spool, nospool, ceil = 0, 1, 2
	pubs := []publisher{
		spool: {"spool", func(ctx context.Context, i int) error {
			_, err := spooled.Store(ctx, as[i], store.UserContext{})
			return err
		}},
		nospool: {"nospool", func(ctx context.Context, i int) error {
			_, err := direct.Store(ctx, as[i], store.UserContext{})
			return err
		}},
		ceil: {"ceiling", func(_ context.Context, i int) error { return ceiling.write(frames[i]) }},
	}

	rounds := min(8, b.N)
	busy := make([]time.Duration, len(pubs))
	lat := make([][]time.Duration, len(pubs))
	for j := range lat {
		lat[j] = make([]time.Duration, b.N)
	}
	var drained time.Duration
	var ceilingSyncs []time.Duration
	st0 := spooled.Stats()
	b.ResetTimer()
	for r := range rounds {
		lo, hi := r*b.N/rounds, (r+1)*b.N/rounds
		for k := range pubs {
			switch j := (r + k) % len(pubs); j {
			case spool:
				start := time.Now()
				busy[j] += publishConcurrently(b, pubs[j], callers, lo, hi, lat[j])
				waitSpoolEmpty(b, spooled)
				drained += time.Since(start)
			case ceil:
				var n int64
				for _, f := range frames[lo:hi] {
					n += int64(len(f))
				}
				ceiling = openGroupFile(b, filepath.Join(dir, "ceiling"), n)
				busy[j] += publishConcurrently(b, pubs[j], callers, lo, hi, lat[j])
				ceilingSyncs = append(ceilingSyncs, ceiling.close(b)...)
			default:
				busy[j] += publishConcurrently(b, pubs[j], callers, lo, hi, lat[j])
			}
		}
	}
	b.StopTimer()
	st := spooled.Stats()

	rate := make([]float64, len(pubs))
	for j, p := range pubs {
		slices.Sort(lat[j])
		b.ReportMetric(quantileMicros(lat[j], 0.50), p.name+"-p50-µs")
		b.ReportMetric(quantileMicros(lat[j], 0.99), p.name+"-p99-µs")
		rate[j] = float64(b.N) / busy[j].Seconds()
		b.ReportMetric(rate[j], p.name+"-records/s")
	}
	b.ReportMetric(rate[spool]/rate[ceil], "spool/ceiling")
	b.ReportMetric(rate[spool]/rate[nospool], "spool/nospool")
	b.ReportMetric(float64(b.N)/drained.Seconds(), "spool-drained-records/s")
	b.ReportMetric(float64(st.Spooled-st0.Spooled)/float64(st.Spool.SyncLatency.Count-st0.Spool.SyncLatency.Count), "spool-records/sync")
	b.ReportMetric(float64(st.Spool.SyncLatency.P50.Nanoseconds())/1e3, "spool-sync-p50-µs")
	b.ReportMetric(float64(b.N)/float64(len(ceilingSyncs)), "ceiling-records/sync")
	slices.Sort(ceilingSyncs)
	b.ReportMetric(quantileMicros(ceilingSyncs, 0.50), "ceiling-sync-p50-µs")
	b.ReportMetric(0, "ns/op")
}

// checkOnDisk fails b when dir is in memory, where fdatasync costs nothing.
func checkOnDisk(b *testing.B, dir string) {
	var fs syscall.Statfs_t
	if err := syscall.Statfs(dir, &fs); err != nil {
		b.Fatal(err)
	}
	if t := uint32(fs.Type); t == 0x01021994 || t == 0x858458f6 { // tmpfs, ramfs
		b.Fatalf("%s is in memory, where fdatasync costs nothing: set TMPDIR to a directory on the disk to measure", dir)
	}
}

// waitSpoolEmpty returns once s's publisher has every spooled record in
// Kafka. A round's records take seconds at most: a minute is a stuck
// publisher.
func waitSpoolEmpty(b *testing.B, s *kafkastore.Store) {
	deadline := time.Now().Add(time.Minute)
	for s.Stats().Spool.Records > 0 {
		if time.Now().After(deadline) {
			b.Fatalf("spool not drained after a minute (Kafka healthy): %+v", s.Stats().Spool)
		}
		time.Sleep(time.Millisecond)
	}
}

// groupFile is the ceiling of a spool on its disk: frames appended to a
// preallocated file (as a spool's segment is), every write queued while
// the previous group was written joining the next group, which takes one
// write and one fdatasync.
type groupFile struct {
	f     *os.File
	mu    sync.Mutex
	queue []groupWrite
	kick  chan struct{}
	done  chan struct{}
	syncs []time.Duration
}

type groupWrite struct {
	frame []byte
	done  chan error
}

// openGroupFile creates path with size bytes preallocated and made
// durable, as the spool creates a segment, and starts its writer.
func openGroupFile(b *testing.B, path string, size int64) *groupFile {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_TRUNC|os.O_RDWR, 0o644)
	if err != nil {
		b.Fatal(err)
	}
	if err := syscall.Fallocate(int(f.Fd()), 0, 0, size); err != nil {
		b.Fatal(err)
	}
	if err := syscall.Fdatasync(int(f.Fd())); err != nil {
		b.Fatal(err)
	}
	d, err := os.Open(filepath.Dir(path))
	if err != nil {
		b.Fatal(err)
	}
	if err := d.Sync(); err != nil {
		b.Fatal(err)
	}
	d.Close()
	g := &groupFile{f: f, kick: make(chan struct{}, 1), done: make(chan struct{})}
	go g.run()
	return g
}

func (g *groupFile) write(frame []byte) error {
	w := groupWrite{frame: frame, done: make(chan error, 1)}
	g.mu.Lock()
	g.queue = append(g.queue, w)
	g.mu.Unlock()
	select {
	case g.kick <- struct{}{}:
	default: // the writer is kicked already and will find w
	}
	return <-w.done
}

func (g *groupFile) run() {
	defer close(g.done)
	fd := int(g.f.Fd())
	var off int64
	var buf []byte
	for range g.kick {
		g.mu.Lock()
		group := g.queue
		g.queue = nil
		g.mu.Unlock()
		if len(group) == 0 {
			continue
		}
		buf = buf[:0]
		for _, w := range group {
			buf = append(buf, w.frame...)
		}
		_, err := g.f.WriteAt(buf, off)
		if err == nil {
			start := time.Now()
			err = syscall.Fdatasync(fd)
			g.syncs = append(g.syncs, time.Since(start))
		}
		off += int64(len(buf))
		for _, w := range group {
			w.done <- err
		}
	}
}

// close stops the writer, once every write returned, removes the file and
// returns the durations of its fdatasyncs.
func (g *groupFile) close(b *testing.B) []time.Duration {
	close(g.kick)
	<-g.done
	if err := g.f.Close(); err != nil {
		b.Fatal(err)
	}
	if err := os.Remove(g.f.Name()); err != nil {
		b.Fatal(err)
	}
	return g.syncs
}
