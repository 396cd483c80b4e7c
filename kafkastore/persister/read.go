package persister

import (
	"context"
	"log/slog"
	"time"

	"github.com/go-whisk/activationstore/codec"
	"github.com/go-whisk/activationstore/kafkastore/internal/kafkaconn"
	"github.com/go-whisk/activationstore/store"
	"github.com/segmentio/kafka-go"
)

// persistRecord is one record read, on its way to the primary or the
// dead-letter topic.
type persistRecord struct {
	msg     kafka.Message
	ps      *persistPartition
	charged int64 // taken from the in-flight budget

	act        *store.Activation // nil: dead-letter it
	deadReason string
	deadErr    error
	// inDoubt: a write of it failed without a verdict (a timeout, a
	// lost connection, the drain's end), so it may be in the primary.
	inDoubt bool
}

// persistRecordOverhead is the weight of a record beyond its bytes: the
// kafka.Message, the decoded activation's structures, the bookkeeping.
// Measured (TestPersistRecordWeight): a 398-byte record takes 1.6 KiB of
// heap while in flight; 512 bytes, as before, left it charged 1.4 KiB.
const persistRecordOverhead = 1024

// fetchMaxBytes sizes a partition reader's fetches from the in-flight cap.
func (p *Persister) fetchMaxBytes() int {
	return int(min(max(p.cfg.maxInFlightBytes/8, 64<<10), 8<<20))
}

func (g *persistGeneration) read(ctx context.Context, ps *persistPartition, out chan<- *persistRecord) {
	p := g.p
	r := kafka.NewReader(kafka.ReaderConfig{
		Brokers:         p.cfg.conn.Brokers,
		Topic:           ps.topic,
		Partition:       ps.partition,
		Dialer:          p.dialer,
		MinBytes:        1,
		MaxBytes:        p.fetchMaxBytes(),
		MaxWait:         500 * time.Millisecond,
		QueueCapacity:   8,
		ReadLagInterval: -1,
		ReadBackoffMin:  p.cfg.retryMin,
		ReadBackoffMax:  max(p.cfg.retryMin, min(p.cfg.retryMax, time.Second)),
		Logger:          kafkaconn.Logger{Log: p.log, Level: slog.LevelDebug},
		ErrorLogger:     kafkaconn.Logger{Log: p.log, Level: slog.LevelWarn},
	})
	defer r.Close()
	if err := r.SetOffset(ps.start); err != nil {
		p.log.Error("persister cannot set the start offset", "topic", ps.topic, "partition", ps.partition,
			"offset", ps.start, "err", err)
		return
	}
	// expected is the next offset to read, when known. kafka-go moves a
	// reader whose offset Kafka deleted to the log start without telling:
	// a committed offset below it, or a jump while reading, is counted.
	expected := ps.start
	if expected >= 0 {
		p.checkRetention(ctx, ps, expected, -1)
	}
	for attempt := 1; ; {
		m, err := r.FetchMessage(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			p.log.Warn("persister cannot read a partition; retrying", "topic", ps.topic,
				"partition", ps.partition, "attempt", attempt, "err", err)
			if !kafkaconn.Sleep(ctx, p.retry.Wait(attempt)) {
				return
			}
			attempt++
			continue
		}
		attempt = 1
		if expected >= 0 && m.Offset > expected {
			p.checkRetention(ctx, ps, expected, m.Offset)
		}
		expected = m.Offset + 1
		rec := &persistRecord{msg: m, ps: ps}
		charged, err := p.budget.acquire(ctx, persistRecordWeight(&m))
		if err != nil {
			return // not read: the next owner reads it
		}
		rec.charged = charged
		ps.tracker.add(m.Offset)
		p.stats.read.Add(1)
		ps.firstOffset.CompareAndSwap(-1, m.Offset)
		if m.HighWaterMark > ps.highWaterMark.Load() {
			ps.highWaterMark.Store(m.HighWaterMark)
		}
		if g.skipMarked(rec) { // HeaderStoreSkip: see storeskip.go
			p.budget.release(rec.charged)
			continue
		}
		if !p.classify(rec) {
			g.settle(rec, endSkipped)
			p.budget.release(rec.charged)
			continue
		}
		select {
		case out <- rec:
		case <-ctx.Done():
			g.abandon(rec)
			p.budget.release(rec.charged)
			return
		}
	}
}

// classify decodes a record. It returns false for a record with nothing to
// persist; otherwise it sets either the activation or the dead-letter reason.
func (p *Persister) classify(r *persistRecord) bool {
	m, err := codec.Decode(r.msg.Value)
	if err != nil {
		r.deadReason, r.deadErr = DeadLetterMalformed, err
		return true
	}
	a := m.Activation()
	if a == nil {
		return false // CompletionMessage, or a result shrunk to its id
	}
	if err := store.ValidateActivation(a); err != nil {
		r.deadReason, r.deadErr = DeadLetterInvalid, err
		return true
	}
	r.act = a
	return true
}

// persistRecordWeight is what a record read counts against the in-flight
// budget: two and a half times its bytes (the raw record, kept for
// dead-lettering, and the decoded activation, whose log lines take a
// string header and a rounded-up allocation each) and the overhead.
// TestPersistRecordWeight measures the heap it stands for.
func persistRecordWeight(m *kafka.Message) int64 {
	n := int64(len(m.Value) + len(m.Key))
	for _, h := range m.Headers {
		n += int64(len(h.Key) + len(h.Value))
	}
	return 2*n + n/2 + persistRecordOverhead
}
