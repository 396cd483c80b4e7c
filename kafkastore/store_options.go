package kafkastore

import (
	"errors"
	"fmt"
	"regexp"
	"time"

	"github.com/go-whisk/activationstore/kafkastore/internal/kafkaconn"
)

// Defaults of the Store's options.
const (
	// DefaultTopic is where Store publishes: OpenWhisk's
	// whisk.kafka-activation-store.activations-topic default, which a
	// persister following ^completed.* consumes.
	DefaultTopic = "completed-others"

	// ActivationsTopic is the conventional topic of the logs-inside mode:
	// records are the WhiskActivation JSON itself, logs included.
	ActivationsTopic = "activations"

	// DefaultMaxRequestSize is OpenWhisk's MAX_ACTIVATION_LIMIT: the
	// activation payload limit whisk.activation.payload.max (1 MiB =
	// 1048576 B) plus whisk.activation.serdes-overhead (6068 B), the
	// max.request.size of OpenWhisk's ack producers and the
	// max.message.bytes of its completed<N> topics. The bare payload limit
	// would reject a maximal result once wrapped in its JSON.
	DefaultMaxRequestSize = 1048576 + 6068

	// DefaultPublishTimeout bounds one Store's publish when the caller's
	// context has no earlier deadline: Kafka's Java producer's
	// delivery.timeout.ms default (120 s), which the producers of a Scala
	// OpenWhisk run with. Within it a Store waits through a partition
	// leader's election (10 to 13 s after a broker is lost, with KRaft's
	// defaults) instead of failing; on a topic with more than one partition
	// it does not wait for the election at all but sends to another
	// partition.
	DefaultPublishTimeout = 120 * time.Second

	// maxRequestTimeout bounds each request to a broker, New's topic set-up
	// and Close: Kafka's request.timeout.ms default (30 s), and OpenWhisk's
	// producer request-timeout-ms. A request that times out is sent again
	// within the publish timeout.
	maxRequestTimeout = 30 * time.Second

	// DefaultLinger is how long a batch waits for more records before it
	// is sent. Zero: records that arrive while earlier writes are in
	// flight form the next batch anyway (group commit), so a lone Store
	// costs one round trip and concurrent ones share produce requests.
	DefaultLinger = 0

	// DefaultTopicRetention is the retention of a topic the Store creates:
	// long enough to cover a persister or database outage over a weekend.
	// OpenWhisk's completed* topics keep one hour, which loses records
	// whenever a persister lags longer.
	DefaultTopicRetention = 7 * 24 * time.Hour

	// DefaultTopicPartitions is the partition count of a topic the Store
	// creates: up to that many persisters of one group share the load.
	DefaultTopicPartitions = 8

	defaultStoreClientID = "activationstore"
)

// OversizePolicy decides what Store does with a record above the maximum
// request size, whether found so before sending or rejected by the broker.
// No policy drops a record silently.
type OversizePolicy int

const (
	// OversizeToPrimary stores the record directly in the primary store,
	// logs a warning and counts it (Stats.Oversize, Stats.OversizeToPrimary).
	// The default: the record is kept, the persister is bypassed.
	OversizeToPrimary OversizePolicy = iota
	// OversizeReject returns an *OversizeError (matching ErrOversize) and
	// writes nothing.
	OversizeReject
)

func (p OversizePolicy) String() string {
	switch p {
	case OversizeToPrimary:
		return "OversizeToPrimary"
	case OversizeReject:
		return "OversizeReject"
	default:
		return fmt.Sprintf("OversizePolicy(%d)", int(p))
	}
}

// storeConfig holds the settings of New. Owned by the Store's files.
type storeConfig struct {
	topic            string
	storeInPrimary   bool
	maxRequestSize   int   // 0: DefaultMaxRequestSize
	logsInActivation *bool // nil: derived from the topic name
	oversize         OversizePolicy
	publishTimeout   time.Duration
	fallback         bool
	linger           time.Duration
	createTopic      bool
	createTopicSet   bool
	topicRetention   time.Duration
	topicPartitions  int
	topicReplication int
	spool            *spoolConfig // nil: no spool
}

func (sc *storeConfig) setDefaults() {
	if sc.topic == "" {
		sc.topic = DefaultTopic
	}
	if sc.publishTimeout == 0 {
		sc.publishTimeout = DefaultPublishTimeout
	}
	if !sc.createTopicSet {
		sc.createTopic = true
	}
	if sc.topicRetention == 0 {
		sc.topicRetention = DefaultTopicRetention
	}
	if sc.topicPartitions == 0 {
		sc.topicPartitions = DefaultTopicPartitions
	}
	if sc.topicReplication == 0 {
		sc.topicReplication = -1
	}
}

// requestTimeout bounds one request to a broker: the publish timeout, at
// most maxRequestTimeout.
func (sc *storeConfig) requestTimeout() time.Duration {
	return min(sc.publishTimeout, maxRequestTimeout)
}

// logsInside reports the mode: true publishes the activation JSON itself,
// false a ResultMessage. Unless set with WithLogsInActivation, a topic
// named "completed…" gets ResultMessages (what the invokers' acks carry)
// and any other topic, "activations" above all, the activation itself.
func (sc *storeConfig) logsInside() bool {
	if sc.logsInActivation != nil {
		return *sc.logsInActivation
	}
	return !completedTopic.MatchString(sc.topic)
}

var completedTopic = regexp.MustCompile(`^completed`)

// WithTopic sets the topic Store publishes to; default DefaultTopic
// ("completed-others"). The topic also selects the record format, see
// WithLogsInActivation.
func WithTopic(name string) Option {
	return option("WithTopic", func(c *storeConfig) error {
		if err := kafkaconn.CheckName("topic", name); err != nil {
			return err
		}
		c.topic = name
		return nil
	})
}

// WithStoreInPrimary makes Store also write each record to the primary
// store after publishing it (OpenWhisk's store-in-primary, a trial mode).
// Default false: the persister writes the primary.
func WithStoreInPrimary(on bool) Option {
	return option("WithStoreInPrimary", func(c *storeConfig) error {
		c.storeInPrimary = on
		return nil
	})
}

// WithMaxRequestSize sets the largest record, in bytes as Kafka measures
// it (a record batch of one), that Store publishes; larger ones follow the
// oversize policy. It is also the writer's batch limit and the
// max.message.bytes of a topic the Store creates. A value below
// DefaultMaxRequestSize is raised to it, with a warning logged by New,
// as OpenWhisk does. Raise it when logs travel inside activations.
func WithMaxRequestSize(bytes int) Option {
	return option("WithMaxRequestSize", func(c *storeConfig) error {
		if bytes <= 0 {
			return fmt.Errorf("%d bytes: want a positive size", bytes)
		}
		c.maxRequestSize = bytes
		return nil
	})
}

// WithLogsInActivation sets the record format explicitly. true: the
// WhiskActivation JSON itself, logs included (the "activations" topic of
// the logs-inside deployment). false: an OpenWhisk ResultMessage
// {"transid":[…],"response":{activation}} that a persister reads like the
// invokers' acks (the completed* topics, logs stored separately). Without
// this option the topic decides: false for names starting with
// "completed", true for any other.
func WithLogsInActivation(on bool) Option {
	return option("WithLogsInActivation", func(c *storeConfig) error {
		c.logsInActivation = &on
		return nil
	})
}

// WithOversizePolicy sets what happens to a record above the maximum
// request size; default OversizeToPrimary.
func WithOversizePolicy(p OversizePolicy) Option {
	return option("WithOversizePolicy", func(c *storeConfig) error {
		if p != OversizeToPrimary && p != OversizeReject {
			return fmt.Errorf("unknown policy %v", p)
		}
		c.oversize = p
		return nil
	})
}

// WithPublishTimeout bounds each publish, attempts sent again after a
// broker failure included; default DefaultPublishTimeout (120 s, Kafka's
// delivery.timeout.ms). Each request to a broker is bounded by it too, at
// most 30 s (Kafka's request.timeout.ms). The caller's context still
// applies when its deadline is earlier. A lower value fails Stores during
// a leader election on a single-partition topic rather than waiting it
// out: an election takes 10 to 13 s after a broker is lost with KRaft's
// default broker.session.timeout.ms (9 s), and longer with ZooKeeper.
func WithPublishTimeout(d time.Duration) Option {
	return option("WithPublishTimeout", func(c *storeConfig) error {
		if d <= 0 {
			return fmt.Errorf("%v: want a positive duration", d)
		}
		c.publishTimeout = d
		return nil
	})
}

// WithFallbackToPrimary makes Store write a record to the primary store
// when publishing it fails (Kafka unavailable, timeout), with a warning
// and a count in Stats.Fallbacks. Default false: the error is returned.
// A record whose publish timed out may still reach Kafka later; the
// persister then sees a conflict, which counts as persisted.
func WithFallbackToPrimary(on bool) Option {
	return option("WithFallbackToPrimary", func(c *storeConfig) error {
		c.fallback = on
		return nil
	})
}

// WithLinger makes each batch wait d for more records before it is sent;
// default DefaultLinger (0). Batching needs no linger: records queue while
// earlier writes are in flight and leave together. A linger trades the
// latency of every Store for fewer, larger produce requests; Go timers
// below a millisecond often take about one. kafka-go's own BatchTimeout
// is not used: its default, one second, would be added to every Store.
func WithLinger(d time.Duration) Option {
	return option("WithLinger", func(c *storeConfig) error {
		if d < 0 || d > time.Second {
			return fmt.Errorf("%v: want 0 to 1s", d)
		}
		c.linger = d
		return nil
	})
}

// WithTopicCreation sets whether New creates the topic when it is missing
// (default true, as OpenWhisk's ensureTopic). With false, New does not
// contact the brokers at all; use it when the topic is managed elsewhere
// or the client may not create topics.
func WithTopicCreation(on bool) Option {
	return option("WithTopicCreation", func(c *storeConfig) error {
		c.createTopic = on
		c.createTopicSet = true
		return nil
	})
}

// WithTopicRetention sets retention.ms of a topic the Store creates;
// default DefaultTopicRetention. A negative duration keeps records
// forever. An existing topic is left as it is.
func WithTopicRetention(d time.Duration) Option {
	return option("WithTopicRetention", func(c *storeConfig) error {
		switch {
		case d == 0:
			return errors.New("0: want a positive duration, or a negative one for unlimited retention")
		case d > 0 && d < time.Millisecond:
			return fmt.Errorf("%v: want at least 1ms", d)
		case d < 0:
			d = -1
		}
		c.topicRetention = d
		return nil
	})
}

// WithTopicPartitions sets the partition count of a topic the Store
// creates; default DefaultTopicPartitions.
func WithTopicPartitions(n int) Option {
	return option("WithTopicPartitions", func(c *storeConfig) error {
		if n < 1 {
			return fmt.Errorf("%d: want at least 1", n)
		}
		c.topicPartitions = n
		return nil
	})
}

// WithTopicReplicationFactor sets the replication factor of a topic the
// Store creates; default the broker's default.replication.factor. From 3
// on, the topic also gets min.insync.replicas=2: with acks=all, a Store
// then returns nil only when two replicas hold the record, and a record
// survives the loss of any one broker.
func WithTopicReplicationFactor(n int) Option {
	return option("WithTopicReplicationFactor", func(c *storeConfig) error {
		if n < 1 {
			return fmt.Errorf("%d: want at least 1", n)
		}
		c.topicReplication = n
		return nil
	})
}
