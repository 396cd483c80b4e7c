package spool

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkAppend measures Append at 1, 16 and 64 concurrent callers and
// 1 KiB, 10 KiB and 1 MiB payloads, with a publisher reading and
// acknowledging as it would, and in the same run the ceiling: one
// goroutine writing the same frames into preallocated files, like
// segments, with one write and one fdatasync per group of the size the
// spool's groups had on average (records/sync). It reports p50 and p99
// latency, throughput (MB/s), the ceiling's throughput and ratio =
// throughput / ceiling; ratio-ideal compares with groups of as many
// frames as there are callers, which no group commit reaches (a caller
// answered from one group can only join the next but one).
//
//	go test -run '^$' -bench BenchmarkAppend -benchtime 2s ./kafkastore/internal/spool
func BenchmarkAppend(b *testing.B) {
	for _, callers := range []int{1, 16, 64} {
		for _, size := range []int{1 << 10, 10 << 10, 1 << 20} {
			b.Run(fmt.Sprintf("callers=%d/payload=%s", callers, sizeName(size)), func(b *testing.B) {
				benchAppend(b, callers, size)
			})
		}
	}
}

func sizeName(n int) string {
	if n >= 1<<20 {
		return fmt.Sprintf("%dMiB", n>>20)
	}
	return fmt.Sprintf("%dKiB", n>>10)
}

func benchAppend(b *testing.B, callers, size int) {
	var syncs atomic.Int64
	s, err := Open(b.TempDir(), Options{ObserveSync: func(time.Duration) { syncs.Add(1) }})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	published := make(chan struct{})
	go func() { // the publisher: keeps the spool from filling up
		defer close(published)
		for {
			recs, err := s.Read(ctx, 1000, 16<<20)
			if err != nil {
				return
			}
			s.Ack(recs[len(recs)-1].Seq)
		}
	}()
	payload := make([]byte, size)
	lat := make([][]time.Duration, callers)
	b.SetBytes(int64(size))
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	for c := range callers {
		n := b.N / callers
		if c < b.N%callers {
			n++
		}
		lat[c] = make([]time.Duration, 0, n)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range n {
				t0 := time.Now()
				if err := s.Append(ctx, payload); err != nil {
					b.Error(err)
					return
				}
				lat[c] = append(lat[c], time.Since(t0))
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	cancel()
	<-published

	all := slices.Concat(lat...)
	slices.Sort(all)
	if len(all) == 0 {
		return
	}
	frame := int64(headerSize + size)
	perSync := float64(b.N) / float64(max(syncs.Load(), 1))
	ceiling := ceilingBytesPerSec(b, b.N, frame, max(int(perSync+0.5), 1))
	ideal := ceilingBytesPerSec(b, b.N, frame, callers)
	got := float64(int64(b.N)*frame) / elapsed.Seconds()
	b.ReportMetric(float64(all[len(all)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(all[len(all)*99/100].Microseconds()), "p99-µs")
	b.ReportMetric(perSync, "records/sync")
	b.ReportMetric(ceiling/1e6, "ceiling-MB/s")
	b.ReportMetric(got/ceiling, "ratio")
	b.ReportMetric(got/ideal, "ratio-ideal")
}

// ceilingBytesPerSec writes n frames of frame bytes in groups of callers
// frames (at most groupBytes, at least one frame), each group with one
// write and one fdatasync, into 64 MiB preallocated files like segments.
func ceilingBytesPerSec(b *testing.B, n int, frame int64, callers int) float64 {
	dir := b.TempDir()
	group := max(min(int64(callers)*frame, groupBytes), frame)
	group -= group % frame
	buf := make([]byte, group)
	for i := range buf {
		buf[i] = byte(i)
	}
	const fileSize = 64 << 20
	var f *os.File
	var off int64
	total := int64(n) * frame
	files := 0
	start := time.Now()
	for written := int64(0); written < total; {
		w := min(group, total-written)
		if f == nil || off+w > max(fileSize, w) {
			if f != nil {
				_ = f.Close()
				_ = os.Remove(f.Name())
			}
			var err error
			f, err = os.OpenFile(filepath.Join(dir, fmt.Sprintf("ceiling-%d", files)), os.O_CREATE|os.O_RDWR|os.O_TRUNC, 0o644)
			if err != nil {
				b.Fatal(err)
			}
			files++
			if err := fallocate(f, max(fileSize, w)); err != nil {
				b.Fatal(err)
			}
			if err := fdatasync(f); err != nil {
				b.Fatal(err)
			}
			if err := syncDir(dir); err != nil {
				b.Fatal(err)
			}
			off = 0
		}
		if _, err := f.WriteAt(buf[:w], off); err != nil {
			b.Fatal(err)
		}
		if err := fdatasync(f); err != nil {
			b.Fatal(err)
		}
		off += w
		written += w
	}
	elapsed := time.Since(start)
	_ = f.Close()
	return float64(total) / elapsed.Seconds()
}
