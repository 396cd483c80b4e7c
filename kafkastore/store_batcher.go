package kafkastore

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/go-whisk/activationstore/kafkastore/internal/kafkaconn"
)

// publishBatcher gathers concurrent Store calls into shared WriteMessages
// calls: group commit. While maxInFlight writes are outstanding, new records
// queue up; when one returns, everything queued goes out in the next write.
// So a lone record leaves at once (one round trip, no linger), and under
// load batches grow with the round-trip time, without a timer.
//
// kafka-go's Writer batches too, but per partition and by a timer: with a
// short BatchTimeout every concurrent record gets its own produce request,
// written one after the other; with a long one every lone record waits.
// One WriteMessages call, in contrast, lands in one batch per partition.
//
// A write that fails for a reason that may pass (a leader down or moved,
// too few replicas in sync, a broken connection) is sent again, to another
// partition when one has a leader that answers (see partitionRouter),
// until it succeeds, fails otherwise, or the publish timeout ends.
type publishBatcher struct {
	w          *kafka.Writer
	router     *partitionRouter
	log        *slog.Logger
	retries    *atomic.Uint64 // records resent
	aborted    chan struct{}  // closed by abort: no more sending again
	abortOnce  sync.Once
	queue      chan *pendingRecord
	slots      chan struct{} // one per write in flight
	linger     time.Duration
	timeout    time.Duration
	maxRecords int
	maxBytes   int
	seq        int // batches sent, for batchBalancer
	stop       chan struct{}
	wg         sync.WaitGroup
	stopOnce   sync.Once
}

// batchBalancer puts every record of one WriteMessages call in the same
// partition, so that a batch is one produce request, and rotates the
// partitions from batch to batch (Kafka's sticky partitioning). The
// batcher numbers each batch in Message.Partition, which kafka-go's Writer
// leaves to the balancer.
type batchBalancer struct{}

func (batchBalancer) Balance(msg kafka.Message, partitions ...int) int {
	return partitions[msg.Partition%len(partitions)]
}

type pendingRecord struct {
	msg  kafka.Message
	size int
	done chan error // buffered: the batcher never blocks on a caller that left
}

const (
	batcherMaxInFlight = 4
	batcherQueue       = 4096
)

// resendBackoff is the wait between two sends of a batch when no other
// partition can take it: an election in progress (or the only partition's
// leader down), or too few replicas in sync.
var resendBackoff = kafkaconn.Backoff{Min: 20 * time.Millisecond, Max: 250 * time.Millisecond}

func newPublishBatcher(w *kafka.Writer, router *partitionRouter, log *slog.Logger, retries *atomic.Uint64, linger, timeout time.Duration, maxRecords, maxBytes int) *publishBatcher {
	b := &publishBatcher{
		w:          w,
		router:     router,
		log:        log,
		retries:    retries,
		aborted:    make(chan struct{}),
		queue:      make(chan *pendingRecord, batcherQueue),
		slots:      make(chan struct{}, batcherMaxInFlight),
		linger:     linger,
		timeout:    timeout,
		maxRecords: maxRecords,
		maxBytes:   maxBytes,
		stop:       make(chan struct{}),
	}
	b.wg.Add(1)
	go b.run()
	return b
}

// publish sends msg (of size bytes) and waits for the brokers' answer, ctx
// or the timeout, whichever comes first.
func (b *publishBatcher) publish(ctx context.Context, msg kafka.Message, size int) error {
	ctx, cancel := context.WithTimeout(ctx, b.timeout)
	defer cancel()
	p := &pendingRecord{msg: msg, size: size, done: make(chan error, 1)}
	select {
	case b.queue <- p:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-p.done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (b *publishBatcher) run() {
	defer b.wg.Done()
	var carry *pendingRecord // the record that did not fit the last batch
	for {
		first := carry
		carry = nil
		if first == nil {
			select {
			case first = <-b.queue:
			case <-b.stop:
				// Store calls have finished (Close holds the lock), but a
				// caller that gave up may have left a record: send it.
				select {
				case first = <-b.queue:
				default:
					return
				}
			}
		}
		b.slots <- struct{}{} // wait for a free slot; meanwhile the queue fills
		if b.linger > 0 {
			time.Sleep(b.linger)
		}
		batch, bytes := []*pendingRecord{first}, first.size
	gather:
		for len(batch) < b.maxRecords {
			select {
			case p := <-b.queue:
				if bytes+p.size > b.maxBytes {
					carry = p
					break gather
				}
				batch = append(batch, p)
				bytes += p.size
			default:
				break gather
			}
		}
		b.seq = (b.seq + 1) & (1<<30 - 1)
		b.wg.Add(1)
		go b.write(batch, b.seq)
	}
}

func (b *publishBatcher) write(batch []*pendingRecord, seq int) {
	defer b.wg.Done()
	defer func() { <-b.slots }()
	msgs := make([]kafka.Message, len(batch))
	for i, p := range batch {
		msgs[i] = p.msg
	}
	ctx, cancel := context.WithTimeout(context.Background(), b.timeout)
	defer cancel()
	err := b.send(ctx, msgs, seq)
	var werrs kafka.WriteErrors
	perRecord := errors.As(err, &werrs) && len(werrs) == len(batch)
	for i, p := range batch {
		if perRecord {
			p.done <- werrs[i]
		} else {
			p.done <- err
		}
	}
}

// send writes msgs, all to one partition, and sends them again after a
// failure that may pass, to another partition if one can take them at
// once, until ctx ends.
func (b *publishBatcher) send(ctx context.Context, msgs []kafka.Message, seq int) error {
	waits := 0
	var began time.Time // of the first failure
	for attempt := 1; ; attempt++ {
		partition, healthy := b.router.pick(ctx, seq)
		if !healthy && attempt > 1 {
			// Nowhere to go: wait for the refresh the failure started, so
			// that a new leader is known before the next send.
			b.router.wait(ctx)
		}
		for i := range msgs {
			msgs[i].Partition = partition
		}
		err := b.w.WriteMessages(ctx, msgs...)
		if err == nil {
			if attempt > 1 {
				b.log.LogAttrs(ctx, slog.LevelInfo, "kafkastore: batch published after failed attempts",
					slog.Int("records", len(msgs)), slog.Int("attempts", attempt), slog.Duration("elapsed", time.Since(began)))
			}
			return nil
		}
		var werrs kafka.WriteErrors
		if !errors.As(err, &werrs) {
			// Not a produce that failed: no metadata (the cluster never
			// answered), a closed writer, or ctx.
			return err
		}
		cause := writeCause(err)
		if ctx.Err() != nil || !kafkaconn.Retriable(cause) || b.isAborted() {
			return err
		}
		failedPartition, leader, elsewhere := b.router.failed(ctx, partition, cause)
		b.retries.Add(uint64(len(msgs)))
		// The first failure of a batch is a warning; the attempts that
		// follow, several a second through an election, are details.
		level := slog.LevelDebug
		if attempt == 1 {
			level, began = slog.LevelWarn, time.Now()
		}
		b.log.LogAttrs(ctx, level, "kafkastore: produce failed; sending the batch again",
			slog.Int("records", len(msgs)), slog.Int("partition", failedPartition), slog.Int("leader", int(leader)),
			slog.Int("attempt", attempt), slog.Bool("toAnotherPartition", elsewhere), slog.Any("error", cause))
		seq++
		if elsewhere {
			continue
		}
		waits++
		t := time.NewTimer(resendBackoff.Wait(waits))
		select {
		case <-ctx.Done():
			t.Stop()
			return err
		case <-b.aborted:
			t.Stop()
			return err
		case <-t.C:
		}
	}
}

// abort stops sending batches again: Close gave up waiting for them.
func (b *publishBatcher) abort() { b.abortOnce.Do(func() { close(b.aborted) }) }

func (b *publishBatcher) isAborted() bool {
	select {
	case <-b.aborted:
		return true
	default:
		return false
	}
}

// close sends what is queued, waits for the writes in flight, and closes
// the writer.
func (b *publishBatcher) close() error {
	b.stopOnce.Do(func() { close(b.stop) })
	b.wg.Wait()
	b.abort()
	return b.w.Close()
}
