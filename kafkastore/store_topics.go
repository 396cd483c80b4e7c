package kafkastore

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/go-whisk/activationstore/kafkastore/internal/kafkaconn"
)

// topicPublisher publishes to one topic: the Store's own, or an ack topic
// of PublishAck. Each has its transport, because kafka-go's transport
// caches metadata of the topics it is told to ask for, and its router,
// which remembers the failed leaders of that topic's partitions.
type topicPublisher struct {
	topic     string
	own       bool // the Store's topic, not an ack topic
	transport *kafka.Transport
	batcher   *publishBatcher
	// solo resends, alone, a record whose batch the broker rejected as too
	// large, to tell an oversize record from an oversize batch.
	solo *kafka.Writer

	checkMu sync.Mutex
	checked atomic.Bool // the topic exists: found or created
}

// maxBatchRecords bounds the records of one produce request.
const maxBatchRecords = 1000

func (s *Store) newTopicPublisher(topic string, own bool) *topicPublisher {
	tr := s.conn.Transport()
	tr.Context = s.transportCtx
	tr.DialTimeout = min(s.cfg.publishTimeout, 5*time.Second)
	// kafka-go routes produce requests by cached metadata. A failed
	// produce refreshes it at once (partitionRouter); the timer only
	// catches leader moves nothing failed on, such as a restarted broker
	// taking its partitions back. Ask for the one topic only.
	tr.MetadataTopics = []string{topic}
	kafkaLog := kafkaconn.Logger{Log: s.log, Level: slog.LevelDebug}
	reqTimeout := s.cfg.requestTimeout()
	newWriter := func(batchSize, attempts int, balancer kafka.Balancer) *kafka.Writer {
		return &kafka.Writer{
			Addr:            s.conn.Addr(),
			Topic:           topic,
			Balancer:        balancer,
			MaxAttempts:     attempts,
			WriteBackoffMin: 20 * time.Millisecond,
			WriteBackoffMax: 500 * time.Millisecond,
			BatchSize:       batchSize,
			BatchBytes:      int64(s.maxRequestSize),
			// Batches are formed by publishBatcher, one WriteMessages
			// call each; kafka-go reads 0 as its 1 s default.
			BatchTimeout: time.Nanosecond,
			ReadTimeout:  reqTimeout,
			WriteTimeout: reqTimeout,
			RequiredAcks: kafka.RequireAll,
			Transport:    tr,
			ErrorLogger:  kafkaLog,
		}
	}
	// The batcher sends again itself, to another partition when the
	// leader is down: kafka-go's own attempts would insist on one.
	router := newPartitionRouter(tr, s.conn.Addr(), topic, s.log)
	return &topicPublisher{
		topic:     topic,
		own:       own,
		transport: tr,
		batcher: newPublishBatcher(newWriter(maxBatchRecords, 1, batchBalancer{}), router, s.log, &s.stats.publishRetries,
			s.cfg.linger, s.cfg.publishTimeout, maxBatchRecords, s.maxRequestSize),
		solo: newWriter(1, 10, &kafka.RoundRobin{}),
	}
}

// topicFor returns the publisher of topic, made on first use.
func (s *Store) topicFor(topic string) *topicPublisher {
	if topic == s.cfg.topic {
		return s.own
	}
	s.topicsMu.Lock()
	defer s.topicsMu.Unlock()
	tp := s.topics[topic]
	if tp == nil {
		tp = s.newTopicPublisher(topic, false)
		s.topics[topic] = tp
	}
	return tp
}

// allTopics returns every topic publisher made so far.
func (s *Store) allTopics() []*topicPublisher {
	s.topicsMu.Lock()
	defer s.topicsMu.Unlock()
	all := []*topicPublisher{s.own}
	for _, tp := range s.topics {
		all = append(all, tp)
	}
	return all
}

// ensureTopic creates tp's topic when it is missing, once, unless
// WithTopicCreation(false).
func (s *Store) ensureTopic(ctx context.Context, tp *topicPublisher) error {
	if !s.cfg.createTopic || tp.checked.Load() {
		return nil
	}
	tp.checkMu.Lock()
	defer tp.checkMu.Unlock()
	if tp.checked.Load() {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.requestTimeout())
	defer cancel()
	if err := s.setupTopic(ctx, tp); err != nil {
		return err
	}
	tp.checked.Store(true)
	return nil
}

// setupTopic creates tp's topic when it is missing. The Store's topic gets
// the Store's topic settings; an ack topic one partition, as OpenWhisk's
// controller creates its completed<N> topic.
func (s *Store) setupTopic(ctx context.Context, tp *topicPublisher) error {
	spec := kafkaconn.TopicSpec{
		Name:              tp.topic,
		Partitions:        1,
		ReplicationFactor: s.cfg.topicReplication,
		MaxMessageBytes:   s.maxRequestSize,
		MinInSyncReplicas: kafkaconn.MinInSyncFor(s.cfg.topicReplication),
	}
	if tp.own {
		spec.Partitions = s.cfg.topicPartitions
		spec.Retention = s.cfg.topicRetention
	}
	brokers := s.conn.Brokers
	created, err := kafkaconn.EnsureTopic(ctx, tp.transport, brokers, spec)
	if err != nil {
		return fmt.Errorf("kafkastore: topic %q: %w; check that the brokers %v are reachable, that the WithSASL/WithTLS settings match theirs, and that the client may create topics, or create the topic elsewhere and pass WithTopicCreation(false)", tp.topic, err, brokers)
	}
	log := s.log.With(slog.String("topic", tp.topic))
	if created {
		log.Info("kafkastore: created topic", slog.Int("partitions", spec.Partitions),
			slog.Duration("retention", spec.Retention), slog.Int("maxMessageBytes", spec.MaxMessageBytes))
		return nil
	}
	// An existing topic keeps its limit; report a mismatch now rather than
	// with the first large record.
	limit, err := kafkaconn.TopicMaxMessageBytes(ctx, tp.transport, brokers, tp.topic)
	switch {
	case err != nil:
		log.Debug("kafkastore: cannot read the topic's max.message.bytes", slog.Any("error", err))
	case limit > 0 && limit < s.maxRequestSize:
		log.Warn("kafkastore: the topic's max.message.bytes is below the store's max request size; larger records will be rejected by the broker and follow the oversize policy",
			slog.Int("topicMaxMessageBytes", limit), slog.Int("maxRequestSize", s.maxRequestSize),
			slog.String("oversizePolicy", s.cfg.oversize.String()))
	}
	return nil
}

// publishDirect sends msg to tp's topic, without the spool, and resends
// it alone when its batch was refused as too large. oversize reports that
// the broker refused the record alone.
func (s *Store) publishDirect(ctx context.Context, tp *topicPublisher, msg kafka.Message, size int) (oversize bool, err error) {
	err = tp.batcher.publish(ctx, msg, size)
	if err == nil || !tooLarge(err) {
		return false, err
	}
	// The broker measures a whole batch against max.message.bytes; only a
	// record refused alone is oversize.
	s.log.LogAttrs(ctx, slog.LevelInfo, "kafkastore: batch refused as too large; resending the record alone",
		slog.String("topic", tp.topic), slog.String("key", string(msg.Key)), slog.Int("size", size))
	ctx, cancel := context.WithTimeout(ctx, s.cfg.publishTimeout)
	defer cancel()
	err = tp.solo.WriteMessages(ctx, msg)
	return err != nil && tooLarge(err), err
}

// close sends what is queued and closes the writers.
func (tp *topicPublisher) close() error {
	return errors.Join(tp.batcher.close(), tp.solo.Close())
}
