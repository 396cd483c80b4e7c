package persister

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"regexp"
	"time"

	"github.com/go-whisk/activationstore/kafkastore/internal/kafkaconn"
)

// Persister defaults. They follow OpenWhisk where it has a setting
// (metadata.max.age.ms for the topic refresh) and Kafka's consumer defaults
// otherwise.
const (
	DefaultGroupID                   = "activation-persister"
	DefaultDeadLetterTopic           = "activations-dead-letter"
	persisterDefaultTopicRefresh     = 5 * time.Second
	persisterDefaultBatchRecords     = 500
	persisterDefaultBatchBytes       = 4 << 20
	persisterDefaultBatchWait        = 0
	persisterDefaultWriteConcurrency = 4
	persisterDefaultRetryMin         = 100 * time.Millisecond
	persisterDefaultRetryMax         = 10 * time.Second
	persisterDefaultMaxInFlightBytes = 64 << 20
	persisterDefaultCommitInterval   = time.Second
	persisterDefaultDrainTimeout     = 5 * time.Second
	persisterDefaultSessionTimeout   = 30 * time.Second
	persisterDefaultRebalanceTimeout = 30 * time.Second
	persisterDefaultHeartbeat        = 3 * time.Second
	// Dead letters wait for a human: keep them over a long holiday.
	persisterDefaultDeadLetterRetention = 14 * 24 * time.Hour
)

// persisterDefaultTopicPattern follows every invoker ack topic
// (completed<N>) and the Store's completed-others topic.
var persisterDefaultTopicPattern = regexp.MustCompile(`^completed.*`)

// Option configures New. The options of this package and kafkastore's
// SharedOptions (kafkastore.WithBrokers, WithClientID, WithLogger, WithTLS,
// WithSASL) implement it; the Store's own options do not, so passing one
// to New does not compile.
type Option interface {
	// ApplyPersister applies the option. Its parameter type is internal
	// to this module: no other package implements Option.
	ApplyPersister(kafkaconn.Holder) error
}

// option is an option of New only.
type option struct {
	name  string
	apply func(*persisterConfig) error
}

func (o option) ApplyPersister(h kafkaconn.Holder) error {
	c, ok := h.(*config)
	if !ok || o.apply == nil {
		return kafkaconn.ConfigError("persister option %q applied outside persister.New; build options with the With… functions", o.name)
	}
	if err := o.apply(&c.persisterConfig); err != nil {
		return kafkaconn.OptionError(o.name, err)
	}
	return nil
}

// ErrConfig is matched by every configuration error of New; it is
// kafkastore.ErrConfig.
var ErrConfig = kafkaconn.ErrConfig

// config holds every setting of New.
type config struct {
	conn kafkaconn.Config
	persisterConfig
}

func (c *config) Conn() *kafkaconn.Config { return &c.conn }

func applyOptions(c *config, opts []Option) error {
	for _, o := range opts {
		if o == nil {
			return kafkaconn.ConfigError("nil Option passed to persister.New")
		}
		if err := o.ApplyPersister(c); err != nil {
			return err
		}
	}
	return c.conn.Finish(defaultPersisterClientID)
}

// persisterConfig holds the settings of New but the shared ones.
type persisterConfig struct {
	groupID             string
	topicPattern        *regexp.Regexp
	topicRefresh        time.Duration
	deadLetterTopic     string
	deadLetterRetention time.Duration
	batchRecords        int
	batchBytes          int
	batchWait           time.Duration
	writeConcurrency    int
	retryMin, retryMax  time.Duration
	maxInFlightBytes    int64
	commitInterval      time.Duration
	drainTimeout        time.Duration
	sessionTimeout      time.Duration
	rebalanceTimeout    time.Duration
	heartbeat           time.Duration
	groupInstanceID     string
}

func defaultPersisterConfig() persisterConfig {
	return persisterConfig{
		groupID:             DefaultGroupID,
		topicPattern:        persisterDefaultTopicPattern,
		topicRefresh:        persisterDefaultTopicRefresh,
		deadLetterTopic:     DefaultDeadLetterTopic,
		deadLetterRetention: persisterDefaultDeadLetterRetention,
		batchRecords:        persisterDefaultBatchRecords,
		batchBytes:          persisterDefaultBatchBytes,
		batchWait:           persisterDefaultBatchWait,
		writeConcurrency:    persisterDefaultWriteConcurrency,
		retryMin:            persisterDefaultRetryMin,
		retryMax:            persisterDefaultRetryMax,
		maxInFlightBytes:    persisterDefaultMaxInFlightBytes,
		commitInterval:      persisterDefaultCommitInterval,
		drainTimeout:        persisterDefaultDrainTimeout,
		sessionTimeout:      persisterDefaultSessionTimeout,
		rebalanceTimeout:    persisterDefaultRebalanceTimeout,
		heartbeat:           persisterDefaultHeartbeat,
	}
}

// defaultPersisterClientID is distinct per process and per instance, so
// that the brokers attribute lag and traffic to one persister.
func defaultPersisterClientID() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "unknown"
	}
	var r [3]byte
	_, _ = rand.Read(r[:])
	return fmt.Sprintf("persister-%s-%d-%s", host, os.Getpid(), hex.EncodeToString(r[:]))
}

func persisterOption(name string, apply func(*persisterConfig) error) Option {
	return option{name: name, apply: apply}
}

// WithGroupID sets the consumer group the persister joins. Persisters of
// one group share the partitions. Default DefaultGroupID
// ("activation-persister"). A group without a committed offset starts at
// the earliest offset, so nothing published before the first start is lost.
func WithGroupID(id string) Option {
	return persisterOption("WithGroupID", func(c *persisterConfig) error {
		if id == "" {
			return errors.New("empty group id")
		}
		c.groupID = id
		return nil
	})
}

// WithTopicPattern sets which topics the persister follows. Default
// ^completed.*; use ^activations$ when logs are
// stored inside the activation. The dead-letter topic and Kafka's internal
// topics (__…) are never followed, even if they match.
func WithTopicPattern(re *regexp.Regexp) Option {
	return persisterOption("WithTopicPattern", func(c *persisterConfig) error {
		if re == nil {
			return errors.New("nil pattern")
		}
		c.topicPattern = re
		return nil
	})
}

// WithTopicRefresh sets how often the persister lists the brokers' topics
// to pick up new topics matching the pattern (and partitions added to them).
// Default 5 s, as OpenWhisk's metadata.max.age.ms.
func WithTopicRefresh(d time.Duration) Option {
	return persisterOption("WithTopicRefresh", func(c *persisterConfig) error {
		if d <= 0 {
			return fmt.Errorf("refresh interval %v: must be positive", d)
		}
		c.topicRefresh = d
		return nil
	})
}

// WithDeadLetterTopic sets where poison records go (undecodable, or
// rejected as invalid by the primary). Default DefaultDeadLetterTopic. It is
// created if missing, with the retention of WithDeadLetterRetention.
func WithDeadLetterTopic(name string) Option {
	return persisterOption("WithDeadLetterTopic", func(c *persisterConfig) error {
		if err := kafkaconn.CheckName("topic", name); err != nil {
			return err
		}
		c.deadLetterTopic = name
		return nil
	})
}

// WithDeadLetterRetention sets the retention.ms of the dead-letter topic
// when the persister creates it. Default 14 days. An existing topic keeps its configuration.
func WithDeadLetterRetention(d time.Duration) Option {
	return persisterOption("WithDeadLetterRetention", func(c *persisterConfig) error {
		if d < time.Millisecond {
			return fmt.Errorf("retention %v: must be at least 1ms", d)
		}
		c.deadLetterRetention = d
		return nil
	})
}

// WithBatch bounds each write to the primary: at most maxRecords records
// and maxBytes encoded bytes. Defaults: 500 records, 4 MiB, no wait. A
// record larger than maxBytes goes alone. WithBatch(1, …) persists one
// record per write.
//
// Batches adapt to the load: a free writer (WithWriteConcurrency) takes at
// once whatever has been read, so at light load a record is readable in the
// primary milliseconds after it was published; while every writer is busy,
// the next batch grows up to the limits. maxWait, when positive, holds a
// batch for at most that long after its first record before a free writer
// may take it: fewer, larger writes at the price of that much visibility lag.
func WithBatch(maxRecords, maxBytes int, maxWait time.Duration) Option {
	return persisterOption("WithBatch", func(c *persisterConfig) error {
		if maxRecords < 1 || maxBytes < 1 || maxWait < 0 {
			return fmt.Errorf("batch (%d records, %d bytes, %v): records and bytes must be positive, wait not negative", maxRecords, maxBytes, maxWait)
		}
		c.batchRecords, c.batchBytes, c.batchWait = maxRecords, maxBytes, maxWait
		return nil
	})
}

// WithWriteConcurrency bounds the writes in flight to the primary: batches
// when it implements store.BatchStorer, single Store calls otherwise.
// Default 4.
func WithWriteConcurrency(n int) Option {
	return persisterOption("WithWriteConcurrency", func(c *persisterConfig) error {
		if n < 1 {
			return fmt.Errorf("concurrency %d: must be at least 1", n)
		}
		c.writeConcurrency = n
		return nil
	})
}

// WithRetryBackoff bounds the exponential backoff (with jitter) between
// retries of a failed write to the primary or to the dead-letter topic.
// Retries go on until the write succeeds or Run's context ends. Defaults
// 100 ms and 10 s.
func WithRetryBackoff(min, max time.Duration) Option {
	return persisterOption("WithRetryBackoff", func(c *persisterConfig) error {
		if min <= 0 || max < min {
			return fmt.Errorf("backoff [%v, %v]: need 0 < min <= max", min, max)
		}
		c.retryMin, c.retryMax = min, max
		return nil
	})
}

// WithMaxInFlightBytes caps the records read but not yet persisted:
// fetching pauses when the cap is reached. A record weighs two and a half
// times its encoded size (the bytes, kept for dead-lettering, and the
// decoded activation) plus 1 KiB, which covers the heap it takes from
// bare results (398 bytes: 1.6 KiB of heap, charged 2.1 KiB) to records
// with a thousand log lines (63 KiB: 144 KiB of heap, charged 158 KiB).
// A batch's records count until the whole batch is written. Default 64
// MiB. A single record larger than the cap is let through alone.
//
// The partition readers' memory comes on top, per assigned partition: a
// queue of at most 8 records and a connection's buffers — fetches (of
// max(cap/8, 64 KiB), at most 8 MiB) are decoded as they stream in, not
// held whole. On a compressed topic, add one producer batch decompressed,
// and the codec's buffers while a batch is decompressed: little for gzip,
// snappy and zstd, but 8 MiB for lz4 frames that declare 4 MiB blocks, as
// kafka-go and franz-go producers write them (Java producers and brokers
// write 64 KiB blocks: 128 KiB). The codecs' buffers are pooled, so they
// outlive a batch until the second garbage collection after it. Measured
// (internal/losstest) while draining a backlog of ~450-byte records, written
// by kafka-go in 100-record batches, with an 8 MiB cap and 4 partitions:
// the live heap peaked at cap + 3–8 MiB uncompressed, gzip, snappy or
// zstd (mostly the records' heap above their weight), cap + 18–37 MiB lz4;
// written by Kafka's Java producer (kafka-clients 3.9.1, as OpenWhisk's,
// compression.type=lz4, batch.size 64 KiB), cap + 6–7 MiB lz4.
func WithMaxInFlightBytes(n int64) Option {
	return persisterOption("WithMaxInFlightBytes", func(c *persisterConfig) error {
		if n < 1 {
			return fmt.Errorf("cap %d: must be positive", n)
		}
		c.maxInFlightBytes = n
		return nil
	})
}

// WithCommitInterval sets how often offsets are committed besides the
// commit that follows every persisted batch. Default 1 s.
func WithCommitInterval(d time.Duration) Option {
	return persisterOption("WithCommitInterval", func(c *persisterConfig) error {
		if d <= 0 {
			return fmt.Errorf("commit interval %v: must be positive", d)
		}
		c.commitInterval = d
		return nil
	})
}

// WithDrainTimeout sets how long writes in flight may go on after Run's
// context ends or the group rebalances; what is not persisted by then is
// abandoned, uncommitted, and read again by the partition's next owner.
// Keep it below the rebalance timeout. Default 5 s.
func WithDrainTimeout(d time.Duration) Option {
	return persisterOption("WithDrainTimeout", func(c *persisterConfig) error {
		if d < 0 {
			return fmt.Errorf("drain timeout %v: must not be negative", d)
		}
		c.drainTimeout = d
		return nil
	})
}

// WithGroupTimeouts sets the consumer group's session timeout (a member
// silent that long is evicted; the broker bounds it with
// group.min/max.session.timeout.ms), rebalance timeout (how long members
// have to rejoin) and heartbeat interval (also how fast a member learns of
// a rebalance). Defaults: session 30 s, rebalance 30 s, heartbeat 3 s.
func WithGroupTimeouts(session, rebalance, heartbeat time.Duration) Option {
	return persisterOption("WithGroupTimeouts", func(c *persisterConfig) error {
		if session <= 0 || rebalance <= 0 || heartbeat <= 0 || heartbeat >= session {
			return fmt.Errorf("timeouts (session %v, rebalance %v, heartbeat %v): need positive values and heartbeat < session", session, rebalance, heartbeat)
		}
		c.sessionTimeout, c.rebalanceTimeout, c.heartbeat = session, rebalance, heartbeat
		return nil
	})
}

// WithGroupInstanceID makes the persister a static member of its consumer
// group (KIP-345, group.instance.id; brokers 2.3 and later): id names this
// persister instance, and must be stable across its restarts and distinct
// from every other persister of the group — a pod name (a StatefulSet's
// persister-0, or a Deployment pod's name, which survives container
// restarts). Default none: a dynamic member.
//
// A static member that restarts within the session timeout takes its
// partitions back without a rebalance, so a crash-looping persister does
// not stop the others; and it does not leave the group when Run returns:
// its partitions wait for it until the session timeout
// (WithGroupTimeouts) expires it. A dynamic member joins afresh on each
// start and leaves on each stop, and every join and leave rebalances the
// whole group. Two live persisters with the same id fence each other: Run
// returns ErrGroupInstanceFenced.
func WithGroupInstanceID(id string) Option {
	return persisterOption("WithGroupInstanceID", func(c *persisterConfig) error {
		if id != "" {
			if err := kafkaconn.CheckName("group instance id", id); err != nil {
				return err
			}
		}
		c.groupInstanceID = id
		return nil
	})
}
