package invoker

import (
	"context"
	"time"

	"github.com/segmentio/kafka-go"
)

// KafkaAcks publishes acks with kafka-go, acks=all, without kafka-go's 1 s
// default batch delay.
type KafkaAcks struct{ w *kafka.Writer }

// NewKafkaAcks returns a publisher to the given brokers. Close it when done.
func NewKafkaAcks(brokers ...string) *KafkaAcks {
	return &KafkaAcks{w: &kafka.Writer{
		Addr:                   kafka.TCP(brokers...),
		RequiredAcks:           kafka.RequireAll,
		BatchTimeout:           time.Millisecond,
		BatchBytes:             2 << 20,
		AllowAutoTopicCreation: true,
		Balancer:               &kafka.Hash{},
	}}
}

// PublishAck writes one record and waits for the brokers' acknowledgement.
func (k *KafkaAcks) PublishAck(ctx context.Context, topic string, key, value []byte) error {
	return k.w.WriteMessages(ctx, kafka.Message{Topic: topic, Key: key, Value: value})
}

// Close flushes and closes the writer.
func (k *KafkaAcks) Close() error { return k.w.Close() }
