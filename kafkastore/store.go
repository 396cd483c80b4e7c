package kafkastore

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/go-whisk/activationstore/codec"
	"github.com/go-whisk/activationstore/kafkastore/internal/kafkaconn"
	"github.com/go-whisk/activationstore/kafkastore/internal/spool"
	"github.com/go-whisk/activationstore/store"
)

// Errors of Store, matched with errors.Is.
var (
	// ErrClosed: the Store was closed; nothing was written.
	ErrClosed = errors.New("kafkastore: store is closed")
	// ErrOversize: the record is above the maximum request size. The
	// concrete error is an *OversizeError.
	ErrOversize = errors.New("kafkastore: record above the maximum request size")
	// ErrPublish: publishing the record failed and it was stored nowhere.
	// The concrete error is a *PublishError.
	ErrPublish = errors.New("kafkastore: publish failed")
)

// systemTransactionID is the transaction id put on the wire when the
// caller's UserContext names none; "sid_" marks OpenWhisk's system ids.
const systemTransactionID = "sid_kafkastore"

// Store is a store.Store that publishes every record to a Kafka topic,
// from which a Persister writes it to the primary store. Reads and deletes
// go to the primary. A Store is safe for concurrent use; concurrent Store
// calls share produce requests.
type Store struct {
	primary store.Store
	cfg     storeConfig
	conn    kafkaconn.Config
	log     *slog.Logger

	maxRequestSize int
	logsInside     bool
	contentType    string

	// Close cancels transportCtx: kafka-go's writer goes on retrying
	// batches in the background, and without it a retry after Close
	// would open a connection pool whose goroutine never ends.
	transportCtx  context.Context
	stopTransport context.CancelFunc
	own           *topicPublisher // the Store's topic
	topicsMu      sync.Mutex
	topics        map[string]*topicPublisher // ack topics of PublishAck

	spool     *spool.Spool    // nil without WithSpool
	publisher *spoolPublisher // sends the spool's records to Kafka

	mu     sync.RWMutex // held for reading by every call, for writing by Close
	closed bool

	stats storeCounters
}

// A Store has every optional capability: it passes the read ones on to its
// primary, and its StoreBatch publishes to Kafka as Store does (a batch
// handed to the primary would bypass the topic).
var (
	_ store.Store          = (*Store)(nil)
	_ store.BatchStorer    = (*Store)(nil)
	_ store.DurationStater = (*Store)(nil)
	_ store.FilterViewer   = (*Store)(nil)
)

// batchCallers bounds the Store calls one StoreBatch has in flight: enough
// to fill a produce request, few enough that a large batch does not start
// a goroutine per record.
const batchCallers = 64

// New returns a Store that publishes to Kafka and delegates reads and
// deletes to primary, which it does not close. WithBrokers is required.
// Unless WithTopicCreation(false), New creates the topic when it is
// missing (bounded by the request timeout: the publish timeout, at most
// 30 s), so it fails when the brokers are unreachable. With WithSpool it
// does not contact the brokers: it opens the spool (failing when another
// process holds it), and the publisher checks the topic before it first
// sends to it.
func New(primary store.Store, opts ...Option) (*Store, error) {
	if primary == nil {
		return nil, configErr("nil primary store: New needs the store that reads, deletes and oversize records go to")
	}
	var c config
	if err := applyOptions(&c, opts); err != nil {
		return nil, err
	}
	sc := c.storeConfig
	sc.setDefaults()
	s := &Store{
		primary:        primary,
		cfg:            sc,
		conn:           c.conn,
		log:            c.conn.Logger.With(slog.String("component", "kafkastore.Store"), slog.String("topic", sc.topic)),
		maxRequestSize: DefaultMaxRequestSize,
		logsInside:     sc.logsInside(),
		contentType:    ContentTypeResultMessage,
		topics:         map[string]*topicPublisher{},
	}
	if s.logsInside {
		s.contentType = ContentTypeActivation
	}
	switch m := sc.maxRequestSize; {
	case m == 0:
	case m < DefaultMaxRequestSize:
		// As OpenWhisk: a limit below the activation limit would reject
		// records the platform accepted.
		s.log.Warn("kafkastore: configured max request size is below the activation limit; using the activation limit",
			slog.Int("configured", m), slog.Int("using", DefaultMaxRequestSize))
	default:
		s.maxRequestSize = m
	}
	s.transportCtx, s.stopTransport = context.WithCancel(context.Background())
	s.own = s.newTopicPublisher(sc.topic, true)
	fail := func(err error) (*Store, error) {
		_ = s.own.close()
		s.stopTransport()
		s.own.transport.CloseIdleConnections()
		return nil, err
	}
	if sc.spool != nil {
		if err := s.openSpool(*sc.spool); err != nil {
			return fail(err)
		}
		return s, nil
	}
	if err := s.ensureTopic(context.Background(), s.own); err != nil {
		return fail(fmt.Errorf("kafkastore: New: %w", err))
	}
	return s, nil
}

// Store publishes a to the topic and returns its document id, without a
// revision (as OpenWhisk: the persister writes the document later). With
// WithStoreInPrimary it then also stores a in the primary and returns the
// primary's DocInfo.
//
// Without a spool, it returns nil only when the record is durably in Kafka
// (acknowledged by all in-sync replicas) or in the primary. A produce that
// fails for a reason that may pass — a partition leader down or moved, an
// election, too few replicas in sync, a broken connection — is sent again,
// to a partition whose leader answers when there is one (records are not
// key-ordered), else to the same partition once it has a leader, until
// the publish timeout (DefaultPublishTimeout: 120 s, as Kafka's Java
// producer) or ctx ends. So a broker failover costs no error, only
// latency. A record sent again may reach Kafka twice; the persister stores
// it once (the second write is a conflict, counted as persisted).
//
// With WithSpool, it returns nil once the record is fdatasynced in the
// spool; the publisher sends it to Kafka as above, for as long as it
// takes, and from the next process on the same directory if this one
// dies first.
//
// Errors:
//   - ErrInvalid (a *store.InvalidError) before anything is written;
//   - *OversizeError (ErrOversize) when the record is too large for Kafka
//     and the policy is OversizeReject, or the primary write failed;
//   - *PublishError (ErrPublish) when the record is stored nowhere;
//   - *SpoolError when the spool could not take the record (full:
//     ErrSpoolFull; disk full: syscall.ENOSPC; a failed write or sync),
//     and no fallback stored it;
//   - *PrimaryWriteError when the record IS in Kafka (or the spool) but
//     the primary write of store-in-primary failed (store.ErrConflict
//     included);
//   - ErrClosed after Close.
func (s *Store) Store(ctx context.Context, a *store.Activation, uc store.UserContext) (store.DocInfo, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return store.DocInfo{}, ErrClosed
	}
	if err := store.ValidateActivation(a); err != nil {
		s.stats.invalid.Add(1)
		return store.DocInfo{}, err
	}
	if err := ctx.Err(); err != nil {
		// kafka-go would queue the record before noticing.
		return store.DocInfo{}, fmt.Errorf("kafkastore: activation %q not stored: %w", a.DocID(), err)
	}
	msg, err := s.record(a, uc)
	if err != nil {
		return store.DocInfo{}, fmt.Errorf("kafkastore: encode activation %q: %w", a.DocID(), err)
	}
	size := recordBatchSize(&msg)
	if size > s.maxRequestSize {
		return s.storeOversize(ctx, a, uc, &OversizeError{Topic: s.cfg.topic, DocID: a.DocID(), Size: size, Limit: s.maxRequestSize})
	}

	if s.spool != nil {
		if err := s.appendSpool(ctx, s.cfg.topic, &msg, a.DocID()); err != nil {
			return s.spoolFailed(ctx, a, uc, err)
		}
	} else {
		start := time.Now()
		oversize, err := s.publishDirect(ctx, s.own, msg, size)
		if oversize {
			return s.storeOversize(ctx, a, uc, &OversizeError{Topic: s.cfg.topic, DocID: a.DocID(), Size: size, Broker: true})
		}
		if err != nil {
			return s.publishFailed(ctx, a, uc, start, err)
		}
		s.stats.published.Add(1)
		s.stats.publishLatency.observe(time.Since(start))
	}

	info := store.DocInfo{ID: a.DocID()}
	if !s.cfg.storeInPrimary {
		return info, nil
	}
	pinfo, err := s.storePrimary(ctx, a, uc, "store-in-primary")
	if err != nil {
		return info, &PrimaryWriteError{Topic: s.cfg.topic, DocID: a.DocID(), Err: err}
	}
	return pinfo, nil
}

// PublishAck publishes one record to topic as Store publishes
// activations: through the spool when the Store has one (in spool order,
// so records of one topic reach Kafka in the order their calls returned),
// else directly, with the same failover and publish timeout. It is the
// invoker's ack path (examples/invoker's AckPublisher): an ack that
// carries a blocking activation is its only copy, and deserves the same
// durability as a Store. The topic is created when missing, with one
// partition (as OpenWhisk's controller creates completed<N>), unless
// WithTopicCreation(false).
//
// It returns nil once the record is in Kafka or in the spool; otherwise a
// *PublishError, a *SpoolError or an *OversizeError (above the max
// request size; there is no primary for acks), or ErrClosed.
func (s *Store) PublishAck(ctx context.Context, topic string, key, value []byte, headers ...kafka.Header) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return ErrClosed
	}
	if err := kafkaconn.CheckName("topic", topic); err != nil {
		return fmt.Errorf("kafkastore: PublishAck: %w", err)
	}
	msg := kafka.Message{Key: key, Value: value, Headers: headers}
	id := topic + "/" + string(key)
	size := recordBatchSize(&msg)
	if size > s.maxRequestSize {
		s.stats.oversize.Add(1)
		return &OversizeError{Topic: topic, DocID: id, Size: size, Limit: s.maxRequestSize, Policy: OversizeReject}
	}
	if s.spool != nil {
		if err := s.appendSpool(ctx, topic, &msg, id); err != nil {
			s.stats.spoolFailures.Add(1)
			return err
		}
		return nil
	}
	start := time.Now()
	tp := s.topicFor(topic)
	err := s.ensureTopic(ctx, tp)
	if err == nil {
		var oversize bool
		if oversize, err = s.publishDirect(ctx, tp, msg, size); oversize {
			s.stats.oversize.Add(1)
			return &OversizeError{Topic: topic, DocID: id, Size: size, Broker: true, Policy: OversizeReject}
		}
	}
	if err != nil {
		s.stats.publishFailures.Add(1)
		return &PublishError{Topic: topic, DocID: id, Err: writeCause(err), Elapsed: time.Since(start)}
	}
	s.stats.published.Add(1)
	s.stats.publishLatency.observe(time.Since(start))
	return nil
}

// record encodes a in the topic's format.
func (s *Store) record(a *store.Activation, uc store.UserContext) (kafka.Message, error) {
	var value []byte
	var err error
	if s.logsInside {
		value, err = codec.MarshalActivation(a)
	} else {
		tid := codec.TransactionID{ID: uc.TransactionID, Start: time.Now(), ExtraLogging: uc.ExtraLogging}
		if tid.ID == "" {
			tid.ID = systemTransactionID
		}
		value, err = codec.MarshalResultMessage(tid, a)
	}
	if err != nil {
		return kafka.Message{}, err
	}
	return kafka.Message{
		Key:     []byte(a.ActivationID),
		Value:   value,
		Headers: recordHeaders(s.contentType, a.Namespace, a.ActivationID),
	}, nil
}

func (s *Store) publishFailed(ctx context.Context, a *store.Activation, uc store.UserContext, start time.Time, err error) (store.DocInfo, error) {
	s.stats.publishFailures.Add(1)
	err = writeCause(err)
	perr := &PublishError{Topic: s.cfg.topic, DocID: a.DocID(), Err: err, Elapsed: time.Since(start)}
	s.log.LogAttrs(ctx, slog.LevelError, "kafkastore: publish failed",
		slog.String("activationId", a.ActivationID), slog.String("namespace", a.Namespace),
		slog.Duration("elapsed", perr.Elapsed), slog.Bool("fallbackToPrimary", s.cfg.fallback), slog.Any("error", err))
	return s.fallBack(ctx, a, uc, perr, &perr.FallbackErr)
}

// fallBack stores a in the primary when WithFallbackToPrimary is on, and
// returns cause otherwise, or with the primary's error in *fallbackErr.
func (s *Store) fallBack(ctx context.Context, a *store.Activation, uc store.UserContext, cause error, fallbackErr *error) (store.DocInfo, error) {
	if !s.cfg.fallback {
		return store.DocInfo{}, cause
	}
	info, ferr := s.storePrimary(ctx, a, uc, "fallback")
	if ferr != nil {
		*fallbackErr = ferr
		return store.DocInfo{}, cause
	}
	s.stats.fallbacks.Add(1)
	s.log.LogAttrs(ctx, slog.LevelWarn, "kafkastore: stored in the primary instead (fallback)",
		slog.String("activationId", a.ActivationID), slog.String("namespace", a.Namespace))
	return info, nil
}

func (s *Store) storeOversize(ctx context.Context, a *store.Activation, uc store.UserContext, oerr *OversizeError) (store.DocInfo, error) {
	s.stats.oversize.Add(1)
	oerr.Policy = s.cfg.oversize
	attrs := []slog.Attr{
		slog.String("activationId", a.ActivationID), slog.String("namespace", a.Namespace),
		slog.Int("size", oerr.Size), slog.Int("limit", oerr.Limit), slog.Bool("rejectedByBroker", oerr.Broker),
		slog.String("policy", oerr.Policy.String()),
	}
	if s.cfg.oversize == OversizeReject {
		s.log.LogAttrs(ctx, slog.LevelWarn, "kafkastore: record too large for Kafka; rejected", attrs...)
		return store.DocInfo{}, oerr
	}
	s.log.LogAttrs(ctx, slog.LevelWarn, "kafkastore: record too large for Kafka; storing it in the primary directly", attrs...)
	info, err := s.storePrimary(ctx, a, uc, "oversize")
	if err != nil {
		oerr.Err = err
		return store.DocInfo{}, oerr
	}
	s.stats.oversizeToPrimary.Add(1)
	return info, nil
}

// storePrimary writes a to the primary, counting and logging the outcome.
func (s *Store) storePrimary(ctx context.Context, a *store.Activation, uc store.UserContext, why string) (store.DocInfo, error) {
	info, err := s.primary.Store(ctx, a, uc)
	switch {
	case err == nil:
		s.stats.primaryStores.Add(1)
	case errors.Is(err, store.ErrConflict):
		s.stats.primaryConflicts.Add(1)
		s.log.LogAttrs(ctx, slog.LevelInfo, "kafkastore: primary store: document exists",
			slog.String("activationId", a.ActivationID), slog.String("namespace", a.Namespace), slog.String("reason", why))
	default:
		s.stats.primaryFailures.Add(1)
		s.log.LogAttrs(ctx, slog.LevelError, "kafkastore: primary store failed",
			slog.String("activationId", a.ActivationID), slog.String("namespace", a.Namespace),
			slog.String("reason", why), slog.Any("error", err))
	}
	return info, err
}

// Get returns the record from the primary.
func (s *Store) Get(ctx context.Context, namespace, activationID string, uc store.UserContext) (*store.Activation, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return nil, ErrClosed
	}
	return s.primary.Get(ctx, namespace, activationID, uc)
}

// Delete removes the record from the primary. A record still on its way
// through Kafka is not affected and will be persisted afterwards.
func (s *Store) Delete(ctx context.Context, namespace, activationID string, uc store.UserContext) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return ErrClosed
	}
	return s.primary.Delete(ctx, namespace, activationID, uc)
}

// List returns the matching records of the primary, newest first.
func (s *Store) List(ctx context.Context, q store.Query, uc store.UserContext) ([]*store.Activation, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return nil, ErrClosed
	}
	return s.primary.List(ctx, q, uc)
}

// Count counts the matching records of the primary.
func (s *Store) Count(ctx context.Context, q store.Query, uc store.UserContext) (int, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return 0, ErrClosed
	}
	return s.primary.Count(ctx, q, uc)
}

// StoreBatch stores every record as Store does, with up to 64 Store calls
// in flight, so that the records share produce requests: each result is
// what Store returned for its record (nil once the record is in Kafka, an
// *store.InvalidError for a malformed one, and so on). The batch as a
// whole fails only when ctx ends before every record was tried; records
// not tried then get ctx's error.
func (s *Store) StoreBatch(ctx context.Context, as []*store.Activation, uc store.UserContext) ([]store.BatchResult, error) {
	if len(as) == 0 {
		return nil, nil
	}
	results := make([]store.BatchResult, len(as))
	next := make(chan int)
	var wg sync.WaitGroup
	for range min(batchCallers, len(as)) {
		wg.Go(func() {
			for i := range next {
				d, err := s.Store(ctx, as[i], uc)
				results[i] = store.BatchResult{DocInfo: d, Err: err}
			}
		})
	}
	var err error
	for i := range as {
		select {
		case next <- i:
			continue
		case <-ctx.Done():
			err = ctx.Err()
		}
		for j := i; j < len(as); j++ {
			results[j].Err = err
		}
		break
	}
	close(next)
	wg.Wait()
	if err != nil {
		return results, fmt.Errorf("kafkastore: StoreBatch: %w", err)
	}
	return results, nil
}

// DurationStats returns the primary's answer when the primary is a
// store.DurationStater (primary/elasticsearch, primary/memory), and
// otherwise an error matching store.ErrUnsupported for every query: a
// Store implements the read capabilities of every primary, and answers as
// the store package asks of a store that cannot. Records still on their
// way through Kafka are not counted.
func (s *Store) DurationStats(ctx context.Context, q store.DurationQuery, uc store.UserContext) (store.DurationStats, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return store.DurationStats{}, ErrClosed
	}
	ds, ok := s.primary.(store.DurationStater)
	if !ok {
		return store.DurationStats{}, fmt.Errorf("kafkastore: the primary (%T) does not answer duration statistics (primary/elasticsearch and primary/memory do): %w", s.primary, store.ErrUnsupported)
	}
	return ds.DurationStats(ctx, q, uc)
}

// FilterView returns the primary's name filter when the primary is a
// store.FilterViewer, and otherwise store.FilterViewV211, as the store
// package says of a store without one: List and Count go to the primary.
func (s *Store) FilterView() store.FilterView {
	if fv, ok := s.primary.(store.FilterViewer); ok {
		return fv.FilterView()
	}
	return store.FilterViewV211
}

// Stats returns a snapshot of the counters.
func (s *Store) Stats() StoreStats {
	st := s.stats.snapshot()
	if s.spool == nil {
		return st
	}
	sp := s.spool.Stats()
	st.Spool = SpoolStats{
		Dir:            s.cfg.spool.dir,
		Records:        sp.Records,
		Bytes:          sp.Bytes,
		DiskBytes:      sp.DiskBytes,
		Segments:       sp.Segments,
		SyncLatency:    s.stats.spoolSync.summary(),
		Replayed:       sp.Replayed,
		TornTails:      sp.TornTails,
		CorruptFrames:  sp.CorruptFrames,
		Quarantined:    sp.Quarantined,
		FullWaits:      sp.FullWaits,
		FullRejections: sp.FullRejections,
		WriteErrors:    sp.WriteErrors,
		DiskError:      sp.DiskError,
		PublishErrors:  s.stats.spoolPublishErrors.Load(),
		Undeliverable:  s.stats.spoolUndeliverable.Load(),
	}
	if !sp.Oldest.IsZero() {
		st.Spool.OldestAge = time.Since(sp.Oldest)
	}
	return st
}

// Close waits for the Store calls in progress, flushes the writers and
// closes the connections to the brokers; later calls return ErrClosed.
// It does not close the primary. A second Close returns nil. Close waits
// at most the request timeout (the publish timeout, at most 30 s) for
// records whose callers already gave up, then abandons them.
//
// With a spool, Close first gives the publisher the request timeout to
// send what is spooled, unless Kafka is failing, then closes the spool:
// what is left there is published by the next Store on the directory.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()

	wait := s.cfg.requestTimeout()
	var errs []error
	if s.publisher != nil {
		s.publisher.stop(wait)
		errs = append(errs, s.spool.Close())
	}
	topics := s.allTopics()
	done := make(chan error, 1)
	go func() {
		var errs []error
		for _, tp := range topics {
			errs = append(errs, tp.close())
		}
		done <- errors.Join(errs...)
	}()
	timer := time.NewTimer(wait)
	defer timer.Stop()
	select {
	case err := <-done:
		errs = append(errs, err)
	case <-timer.C:
		for _, tp := range topics {
			tp.batcher.abort()
		}
		err := fmt.Errorf("kafkastore: close: records of callers that timed out still unacknowledged after %v; they may yet reach Kafka", wait)
		s.log.Warn("kafkastore: close timed out", slog.Any("error", err))
		errs = append(errs, err)
	}
	s.stopTransport()
	for _, tp := range topics {
		tp.transport.CloseIdleConnections()
	}
	return errors.Join(errs...)
}

// OversizeError reports a record above the maximum request size. It
// matches ErrOversize, and wraps the primary's error when the
// OversizeToPrimary policy could not store the record there either.
type OversizeError struct {
	Topic string
	DocID string // "<namespace>/<activationId>"
	Size  int    // bytes, as a record batch of one
	Limit int    // the Store's max request size; 0 when the broker refused (Broker)
	// Broker is true when the broker refused the record (the topic's
	// max.message.bytes is lower than the Store's limit).
	Broker bool
	Policy OversizePolicy
	Err    error // the primary's error under OversizeToPrimary; nil otherwise
}

func (e *OversizeError) Error() string {
	var b []byte
	b = fmt.Appendf(b, "kafkastore: activation %q: record of %d bytes ", e.DocID, e.Size)
	if e.Broker {
		b = fmt.Appendf(b, "refused by the broker as too large for topic %q", e.Topic)
	} else {
		b = fmt.Appendf(b, "above the max request size of %d bytes", e.Limit)
	}
	if e.Err != nil {
		return string(fmt.Appendf(b, ", and storing it in the primary instead failed: %v", e.Err))
	}
	b = append(b, "; not stored: raise WithMaxRequestSize"...)
	if e.Broker {
		b = append(b, " and the topic's max.message.bytes"...)
	}
	return string(append(b, ", or use the OversizeToPrimary policy"...))
}

// Is makes errors.Is(err, ErrOversize) true.
func (e *OversizeError) Is(target error) bool { return target == ErrOversize }

func (e *OversizeError) Unwrap() error { return e.Err }

// PublishError reports a record that could not be published and is stored
// nowhere. It matches ErrPublish and wraps the Kafka error (and the
// fallback's, if any).
type PublishError struct {
	Topic       string
	DocID       string
	Elapsed     time.Duration
	Err         error // from Kafka or the context
	FallbackErr error // from the primary, when WithFallbackToPrimary tried it
}

func (e *PublishError) Error() string {
	msg := fmt.Sprintf("kafkastore: activation %q not stored: publish to topic %q failed after %v: %v",
		e.DocID, e.Topic, e.Elapsed.Round(time.Millisecond), e.Err)
	if errors.Is(e.Err, context.DeadlineExceeded) || errors.Is(e.Err, context.Canceled) {
		msg += " (the record may still reach Kafka; storing it again is harmless)"
	}
	if e.FallbackErr != nil {
		return msg + "; storing it in the primary instead failed too: " + e.FallbackErr.Error()
	}
	if kafkaconn.IsAuthError(e.Err) {
		return msg + "; " + kafkaconn.AuthHint
	}
	return msg + "; check the brokers, then retry, or enable WithFallbackToPrimary"
}

// Is makes errors.Is(err, ErrPublish) true.
func (e *PublishError) Is(target error) bool { return target == ErrPublish }

func (e *PublishError) Unwrap() []error {
	if e.FallbackErr != nil {
		return []error{e.Err, e.FallbackErr}
	}
	return []error{e.Err}
}

// PrimaryWriteError reports that a record IS published to Kafka, durably,
// but that writing it to the primary as well (WithStoreInPrimary) failed.
// The persister will write it; the caller need not retry. It wraps the
// primary's error, so errors.Is(err, store.ErrConflict) tells a duplicate.
type PrimaryWriteError struct {
	Topic string
	DocID string
	Err   error
}

func (e *PrimaryWriteError) Error() string {
	return fmt.Sprintf("kafkastore: activation %q is published to topic %q (the persister will store it), but storing it in the primary failed: %v",
		e.DocID, e.Topic, e.Err)
}

func (e *PrimaryWriteError) Unwrap() error { return e.Err }

// tooLarge reports whether a kafka-go write error means the record is too
// large: the Writer's own check, or the broker's, which arrives inside
// WriteErrors (that has no Unwrap).
func tooLarge(err error) bool {
	var mtl kafka.MessageTooLargeError
	if errors.As(err, &mtl) {
		return true
	}
	return errors.Is(writeCause(err), kafka.MessageSizeTooLarge)
}

// writeCause unpacks the error of the one message of a WriteMessages call.
func writeCause(err error) error {
	var werrs kafka.WriteErrors
	if errors.As(err, &werrs) {
		for _, e := range werrs {
			if e != nil {
				return e
			}
		}
	}
	return err
}

// recordBatchOverhead is the v2 record batch header (base offset, length,
// epoch, magic, CRC, attributes, offsets, timestamps, producer id and
// epoch, base sequence, count): what a broker counts besides the records
// against max.message.bytes.
const recordBatchOverhead = 61

// recordBatchSize is the size of m alone in a v2 record batch, as a broker
// measures it against max.message.bytes and the Java producer against
// max.request.size.
func recordBatchSize(m *kafka.Message) int {
	body := 1 + varintLen(0) + varintLen(0) + // attributes, timestamp and offset deltas
		varintLen(len(m.Key)) + len(m.Key) + varintLen(len(m.Value)) + len(m.Value) + varintLen(len(m.Headers))
	for _, h := range m.Headers {
		body += varintLen(len(h.Key)) + len(h.Key) + varintLen(len(h.Value)) + len(h.Value)
	}
	return recordBatchOverhead + varintLen(body) + body
}

func varintLen(n int) int {
	var b [binary.MaxVarintLen64]byte
	return binary.PutVarint(b[:], int64(n))
}

// String describes the Store for logs; it never includes credentials.
func (s *Store) String() string {
	return "kafkastore.Store(topic=" + strconv.Quote(s.cfg.topic) + ")"
}
