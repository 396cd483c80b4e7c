package kafkastore

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/go-whisk/activationstore/codec"
	"github.com/go-whisk/activationstore/kafkastore/internal/kafkaconn"
	"github.com/go-whisk/activationstore/kafkastore/internal/spool"
	"github.com/go-whisk/activationstore/store"
)

// spoolPublisher sends the spool's records to Kafka, in spool order, one
// produce request at a time (so that the records of a topic reach each
// partition in the order their Stores returned), and acks them to the
// spool only once Kafka has them. A record is never dropped: a failure is
// sent again, at a backoff, for as long as it takes.
type spoolPublisher struct {
	s       *Store
	sp      *spool.Spool
	ctx     context.Context
	cancel  context.CancelFunc
	done    chan struct{}
	failing atomic.Bool           // the latest send failed: Kafka unreachable or refusing
	readErr atomic.Pointer[error] // the spool could not be read; nil once it can
	seq     int                   // batches sent, for batchBalancer's rotation
}

// publisherBackoff spaces the attempts of a batch Kafka does not take: a
// recovered cluster is noticed within a second.
var publisherBackoff = kafkaconn.Backoff{Min: 50 * time.Millisecond, Max: time.Second}

func (s *Store) openSpool(cfg spoolConfig) error {
	if minBytes := 4 * int64(s.maxRequestSize); cfg.maxBytes < minBytes {
		return configErr("WithSpool: WithSpoolMaxBytes(%d) is below 4 times the max request size (%d bytes): the spool could not hold the largest records", cfg.maxBytes, minBytes)
	}
	sp, err := spool.Open(cfg.dir, spool.Options{
		MaxBytes:     cfg.maxBytes,
		SegmentBytes: cfg.segmentBytes,
		Logger:       s.log,
		ObserveSync:  s.stats.spoolSync.observe,
	})
	if err != nil {
		return fmt.Errorf("kafkastore: New: spool: %w", err)
	}
	s.spool = sp
	if st := sp.Stats(); st.Replayed > 0 {
		s.log.Info("kafkastore: the spool holds records an earlier process did not publish; publishing them first",
			slog.String("dir", cfg.dir), slog.Uint64("records", st.Replayed), slog.Int64("bytes", st.Bytes),
			slog.Time("oldest", st.Oldest))
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &spoolPublisher{s: s, sp: sp, ctx: ctx, cancel: cancel, done: make(chan struct{})}
	s.publisher = p
	go p.run()
	go p.watchAge(cfg.ageWarning)
	return nil
}

// appendSpool writes msg, bound for topic, to the spool and waits until
// it is durable there. id names the record in errors.
func (s *Store) appendSpool(ctx context.Context, topic string, msg *kafka.Message, id string) error {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.publishTimeout)
	defer cancel()
	start := time.Now()
	if s.cfg.fallback {
		// A full spool leaves half the time for the primary.
		deadline, _ := ctx.Deadline()
		ctx, cancel = context.WithDeadline(ctx, start.Add(deadline.Sub(start)/2))
		defer cancel()
	}
	payload := appendSpoolRecord(make([]byte, 0, 16+len(topic)+len(msg.Key)+len(msg.Value)+64*len(msg.Headers)), topic, msg)
	if err := s.spool.Append(ctx, payload); err != nil {
		return &SpoolError{Dir: s.cfg.spool.dir, DocID: id, Elapsed: time.Since(start), Err: err}
	}
	s.stats.spooled.Add(1)
	s.stats.spoolLatency.observe(time.Since(start))
	return nil
}

// spoolFailed handles a Store whose record the spool did not take: the
// primary takes it with WithFallbackToPrimary, else the caller gets err.
func (s *Store) spoolFailed(ctx context.Context, a *store.Activation, uc store.UserContext, err error) (store.DocInfo, error) {
	s.stats.spoolFailures.Add(1)
	serr := err.(*SpoolError)
	s.log.LogAttrs(ctx, slog.LevelError, "kafkastore: spool did not take the record",
		slog.String("activationId", a.ActivationID), slog.String("namespace", a.Namespace),
		slog.Bool("fallbackToPrimary", s.cfg.fallback), slog.Any("error", serr.Err))
	return s.fallBack(ctx, a, uc, serr, &serr.FallbackErr)
}

func (p *spoolPublisher) run() {
	defer close(p.done)
	for attempt := 1; ; {
		recs, err := p.sp.Read(p.ctx, maxBatchRecords, p.s.maxRequestSize)
		switch {
		case p.ctx.Err() != nil || errors.Is(err, spool.ErrClosed):
			return // closing; the records stay for the next process
		case err != nil:
			// The disk corrupted a frame under a running spool (Open
			// cuts or quarantines what it finds, but a live read stops
			// at it): say so loudly, and in Ready, until a restart.
			p.readErr.Store(&err)
			if attempt == 1 || attempt%30 == 0 {
				p.s.log.Error("kafkastore: cannot read the spool; publishing has stopped: restart the process, whose spool recovery sets the damage aside",
					slog.Int("attempt", attempt), slog.Any("error", err))
			}
			if !kafkaconn.Sleep(p.ctx, publisherBackoff.Wait(attempt)) {
				return
			}
			attempt++
			continue
		}
		attempt = 1
		p.readErr.Store(nil)
		if !p.deliver(recs) {
			return
		}
		p.sp.Ack(recs[len(recs)-1].Seq)
	}
}

// deliver sends recs to Kafka, each topic's records in their order; false
// when the publisher stopped first.
func (p *spoolPublisher) deliver(recs []spool.Record) bool {
	type topicRun struct {
		tp    *topicPublisher
		msgs  []kafka.Message
		sizes []int
	}
	var runs []*topicRun
	byTopic := map[string]*topicRun{}
	for _, r := range recs {
		topic, msg, err := decodeSpoolRecord(r.Payload)
		if err != nil {
			// Its frame's checksum held, so the record is as written:
			// written by a release that encodes differently.
			p.s.stats.spoolUndeliverable.Add(1)
			p.s.log.Error("kafkastore: spooled record cannot be decoded; skipped",
				slog.Uint64("seq", r.Seq), slog.Any("error", err))
			continue
		}
		msg.Time = r.Appended
		run := byTopic[topic]
		if run == nil {
			run = &topicRun{tp: p.s.topicFor(topic)}
			byTopic[topic] = run
			runs = append(runs, run)
		}
		run.msgs = append(run.msgs, msg)
		run.sizes = append(run.sizes, recordBatchSize(&msg))
	}
	for _, run := range runs {
		for len(run.msgs) > 0 {
			n, bytes := 1, run.sizes[0]
			for n < len(run.msgs) && bytes+run.sizes[n] <= p.s.maxRequestSize {
				bytes += run.sizes[n]
				n++
			}
			if !p.send(run.tp, run.msgs[:n]) {
				return false
			}
			run.msgs, run.sizes = run.msgs[n:], run.sizes[n:]
		}
	}
	return true
}

// send publishes msgs, all of tp's topic, until Kafka takes them; false
// when the publisher stopped first.
func (p *spoolPublisher) send(tp *topicPublisher, msgs []kafka.Message) bool {
	var firstFailure, lastWarning time.Time
	for attempt := 1; ; attempt++ {
		err := p.s.ensureTopic(p.ctx, tp)
		if err == nil {
			ctx, cancel := context.WithTimeout(p.ctx, p.s.cfg.requestTimeout())
			p.seq = (p.seq + 1) & (1<<30 - 1)
			err = tp.batcher.send(ctx, msgs, p.seq)
			cancel()
		}
		if err == nil {
			p.failing.Store(false)
			now := time.Now()
			for i := range msgs {
				p.s.stats.publishLatency.observe(now.Sub(msgs[i].Time))
			}
			p.s.stats.published.Add(uint64(len(msgs)))
			if attempt > 1 {
				p.s.log.Info("kafkastore: spooled records published after failed attempts",
					slog.String("topic", tp.topic), slog.Int("records", len(msgs)), slog.Int("attempts", attempt),
					slog.Duration("elapsed", now.Sub(firstFailure)))
			}
			return true
		}
		if p.ctx.Err() != nil {
			return false
		}
		if tooLarge(err) {
			return p.sendApart(tp, msgs)
		}
		p.failing.Store(true)
		p.s.stats.spoolPublishErrors.Add(1)
		if attempt == 1 {
			firstFailure = time.Now()
		}
		// Kafka may stay down for hours: a warning on the first failure,
		// then one every 30 s.
		if time.Since(lastWarning) >= 30*time.Second {
			lastWarning = time.Now()
			p.s.log.Warn("kafkastore: cannot publish spooled records; they stay in the spool and are sent again",
				slog.String("topic", tp.topic), slog.Int("records", len(msgs)), slog.Int("attempt", attempt),
				slog.Duration("failingFor", time.Since(firstFailure).Round(time.Millisecond)), slog.Any("error", writeCause(err)))
		}
		if !kafkaconn.Sleep(p.ctx, publisherBackoff.Wait(attempt)) {
			return false
		}
	}
}

// sendApart sends the records of a batch the broker refused as too large
// one by one: only a record refused alone is oversize.
func (p *spoolPublisher) sendApart(tp *topicPublisher, msgs []kafka.Message) bool {
	if len(msgs) == 1 {
		return p.oversize(tp, msgs[0])
	}
	for i := range msgs {
		if !p.send(tp, msgs[i:i+1]) {
			return false
		}
	}
	return true
}

// oversize handles a spooled record the broker refused alone as too large
// (the topic's max.message.bytes is below the Store's limit). Its Store
// returned nil, so it is not dropped: the activation it carries goes to
// the primary, whatever the oversize policy.
func (p *spoolPublisher) oversize(tp *topicPublisher, msg kafka.Message) bool {
	s := p.s
	s.stats.oversize.Add(1)
	var a *store.Activation
	m, err := codec.Decode(msg.Value)
	if err == nil {
		a = m.Activation()
	}
	if a == nil {
		s.stats.spoolUndeliverable.Add(1)
		s.log.Error("kafkastore: the broker refuses a spooled record as too large, and it carries no activation to store in the primary; skipped: raise the topic's max.message.bytes",
			slog.String("topic", tp.topic), slog.String("key", string(msg.Key)), slog.Int("size", recordBatchSize(&msg)))
		return true
	}
	for attempt := 1; ; attempt++ {
		_, err := s.storePrimary(p.ctx, a, store.UserContext{}, "oversize")
		if err == nil || errors.Is(err, store.ErrConflict) {
			s.stats.oversizeToPrimary.Add(1)
			return true
		}
		if !kafkaconn.Sleep(p.ctx, publisherBackoff.Wait(attempt)) {
			return false
		}
	}
}

// watchAge warns, once a minute, while the oldest spooled record is older
// than warnAt.
func (p *spoolPublisher) watchAge(warnAt time.Duration) {
	t := time.NewTicker(min(warnAt/2, 10*time.Second))
	defer t.Stop()
	var warned time.Time
	for {
		select {
		case <-p.ctx.Done():
			return
		case <-t.C:
		}
		st := p.sp.Stats()
		if st.Oldest.IsZero() {
			continue
		}
		if age := time.Since(st.Oldest); age > warnAt && time.Since(warned) >= time.Minute {
			warned = time.Now()
			p.s.log.Warn("kafkastore: spooled records are waiting for Kafka",
				slog.Duration("oldestAge", age.Round(time.Millisecond)), slog.Int64("records", st.Records),
				slog.Int64("bytes", st.Bytes), slog.Bool("kafkaFailing", p.failing.Load()))
		}
	}
}

// stop lets the publisher send what is spooled, for at most wait and only
// while Kafka takes it (no send failed meanwhile) and the spool reads,
// then stops it.
func (p *spoolPublisher) stop(wait time.Duration) {
	deadline := time.Now().Add(wait)
	retries := p.s.stats.publishRetries.Load()
	for time.Now().Before(deadline) && !p.failing.Load() && p.readErr.Load() == nil &&
		p.s.stats.publishRetries.Load() == retries && p.sp.Stats().Records > 0 {
		time.Sleep(5 * time.Millisecond)
	}
	p.cancel()
	<-p.done
}

// Ready reports whether the Store takes records at its normal pace: nil,
// or why not. Without a spool it is always nil (a Store waits out a Kafka
// failover within its publish timeout). With one it is an error when the
// spool's disk is failing (the last write or sync failed; matches
// syscall.ENOSPC when the disk is full), or when the spool is full or
// nearly so (matches ErrSpoolFull): Stores then wait for room. Serve it
// as a readiness probe so that load moves elsewhere meanwhile.
func (s *Store) Ready() error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return ErrClosed
	}
	if s.spool == nil {
		return nil
	}
	st := s.spool.Stats()
	dir := s.cfg.spool.dir
	if rerr := s.publisher.readErr.Load(); rerr != nil {
		return fmt.Errorf("kafkastore: spool %s cannot be read, so nothing is published; restart the process: %w", dir, *rerr)
	}
	if st.DiskError != nil {
		hint := "check the disk"
		if errors.Is(st.DiskError, syscall.ENOSPC) {
			hint = "free space on its file system"
		}
		return fmt.Errorf("kafkastore: spool %s: writes are failing; %s: %w", dir, hint, st.DiskError)
	}
	if limit := s.cfg.spool.maxBytes; st.Bytes+int64(s.maxRequestSize) > limit*9/10 {
		return fmt.Errorf("kafkastore: spool %s holds %d of its %d bytes (Kafka taking records: %t): %w",
			dir, st.Bytes, limit, !s.publisher.failing.Load(), ErrSpoolFull)
	}
	return nil
}

// SpoolError reports a record the spool did not take; nothing was written
// unless a fallback to the primary did (then the error is not returned).
// It wraps the cause: errors.Is(err, ErrSpoolFull) when the spool stayed
// full until the context or the publish timeout ended, errors.Is(err,
// syscall.ENOSPC) when its disk is full, otherwise the failed write or
// sync.
type SpoolError struct {
	Dir         string
	DocID       string
	Elapsed     time.Duration
	Err         error
	FallbackErr error // from the primary, when WithFallbackToPrimary tried it
}

func (e *SpoolError) Error() string {
	msg := fmt.Sprintf("kafkastore: %q not stored: spool %s did not take it after %v: %v",
		e.DocID, e.Dir, e.Elapsed.Round(time.Millisecond), e.Err)
	switch {
	case e.FallbackErr != nil:
		return msg + "; storing it in the primary instead failed too: " + e.FallbackErr.Error()
	case errors.Is(e.Err, spool.ErrFull):
		return msg + "; Kafka has not taken the spooled records: check the brokers, raise WithSpoolMaxBytes, or enable WithFallbackToPrimary"
	case e.DiskFull():
		return msg + "; free space on the spool's file system (the spool resumes by itself), or enable WithFallbackToPrimary"
	case errors.Is(e.Err, spool.ErrClosed):
		return msg
	}
	return msg + "; check the spool's disk, then retry, or enable WithFallbackToPrimary"
}

// DiskFull reports whether the spool's file system is full.
func (e *SpoolError) DiskFull() bool {
	var werr *spool.WriteError
	return errors.As(e.Err, &werr) && werr.DiskFull()
}

func (e *SpoolError) Unwrap() []error {
	if e.FallbackErr != nil {
		return []error{e.Err, e.FallbackErr}
	}
	return []error{e.Err}
}
