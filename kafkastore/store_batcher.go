package kafkastore

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/segmentio/kafka-go"
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
type publishBatcher struct {
	w          *kafka.Writer
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

func newPublishBatcher(w *kafka.Writer, linger, timeout time.Duration, maxRecords, maxBytes int) *publishBatcher {
	b := &publishBatcher{
		w:          w,
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
		msgs[i].Partition = seq
	}
	ctx, cancel := context.WithTimeout(context.Background(), b.timeout)
	defer cancel()
	err := b.w.WriteMessages(ctx, msgs...)
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

// close sends what is queued, waits for the writes in flight, and closes
// the writer.
func (b *publishBatcher) close() error {
	b.stopOnce.Do(func() { close(b.stop) })
	b.wg.Wait()
	return b.w.Close()
}
