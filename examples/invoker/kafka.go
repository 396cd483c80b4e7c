package invoker

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/segmentio/kafka-go"
)

// KafkaAcks publishes acks with kafka-go, acks=all, without kafka-go's 1 s
// default batch delay.
type KafkaAcks struct {
	w         *kafka.Writer
	transport *kafka.Transport
}

// NewKafkaAcks returns a publisher to the given brokers. Close it when done.
func NewKafkaAcks(brokers ...string) *KafkaAcks {
	tr := &kafka.Transport{}
	return &KafkaAcks{transport: tr, w: &kafka.Writer{
		Addr:         kafka.TCP(brokers...),
		Transport:    tr,
		RequiredAcks: kafka.RequireAll,
		BatchTimeout: time.Millisecond,
		BatchBytes:   2 << 20,
		Balancer:     &kafka.Hash{},
	}}
}

// MaxAckBytes is OpenWhisk's MAX_ACTIVATION_LIMIT: the 1 MiB payload limit
// plus 6068 bytes of serialisation overhead, the max.message.bytes of
// completed<N> topics.
const MaxAckBytes = 1048576 + 6068

// EnsureTopic creates an ack topic as OpenWhisk's controller does (one
// partition, max.message.bytes = MaxAckBytes) if it does not exist yet.
func (k *KafkaAcks) EnsureTopic(ctx context.Context, topic string) error {
	client := &kafka.Client{Addr: k.w.Addr, Transport: k.transport}
	res, err := client.CreateTopics(ctx, &kafka.CreateTopicsRequest{Topics: []kafka.TopicConfig{{
		Topic: topic, NumPartitions: 1, ReplicationFactor: 1,
		ConfigEntries: []kafka.ConfigEntry{{ConfigName: "max.message.bytes", ConfigValue: strconv.Itoa(MaxAckBytes)}},
	}}})
	if err != nil {
		return fmt.Errorf("create ack topic %s: %w", topic, err)
	}
	if err := res.Errors[topic]; err != nil && !errors.Is(err, kafka.TopicAlreadyExists) {
		return fmt.Errorf("create ack topic %s: %w", topic, err)
	}
	return nil
}

// PublishAck writes one record and waits for the brokers' acknowledgement.
func (k *KafkaAcks) PublishAck(ctx context.Context, topic string, key, value []byte, headers ...kafka.Header) error {
	return k.w.WriteMessages(ctx, kafka.Message{Topic: topic, Key: key, Value: value, Headers: headers})
}

// Close flushes and closes the writer.
func (k *KafkaAcks) Close() error { return k.w.Close() }
