package kafkastore

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/segmentio/kafka-go"
)

// Headers of a dead-lettered record. The record keeps its original key,
// value and headers; these name where it came from and why it was set aside.
const (
	DeadLetterHeaderTopic     = "dead-letter-source-topic"     // topic it was read from
	DeadLetterHeaderPartition = "dead-letter-source-partition" // decimal partition number
	DeadLetterHeaderOffset    = "dead-letter-source-offset"    // decimal offset
	DeadLetterHeaderReason    = "dead-letter-reason"           // DeadLetterMalformed or DeadLetterInvalid
	DeadLetterHeaderError     = "dead-letter-error"            // the error text, naming the field at fault
)

// Values of the DeadLetterHeaderReason header.
const (
	// DeadLetterMalformed: codec.Decode rejected the record (codec.ErrMalformed).
	DeadLetterMalformed = "malformed"
	// DeadLetterInvalid: the activation failed validation (store.ErrInvalid),
	// in the persister or in the primary.
	DeadLetterInvalid = "invalid"
)

// persisterDLQMaxMessageBytes is the max.message.bytes of a dead-letter
// topic the persister creates: room for a 10 MB activation with logs
// plus headers.
const persisterDLQMaxMessageBytes = 16 << 20

// deadLetterMessage builds the record written to the dead-letter topic.
func deadLetterMessage(dlq string, r *persistRecord) kafka.Message {
	headers := make([]kafka.Header, 0, len(r.msg.Headers)+5)
	headers = append(headers, r.msg.Headers...)
	headers = append(headers,
		kafka.Header{Key: DeadLetterHeaderTopic, Value: []byte(r.msg.Topic)},
		kafka.Header{Key: DeadLetterHeaderPartition, Value: []byte(strconv.Itoa(r.msg.Partition))},
		kafka.Header{Key: DeadLetterHeaderOffset, Value: []byte(strconv.FormatInt(r.msg.Offset, 10))},
		kafka.Header{Key: DeadLetterHeaderReason, Value: []byte(r.deadReason)},
		kafka.Header{Key: DeadLetterHeaderError, Value: []byte(r.deadErr.Error())},
	)
	return kafka.Message{Topic: dlq, Key: r.msg.Key, Value: r.msg.Value, Headers: headers}
}

// newDeadLetterWriter writes synchronously with acks=all; the persister
// retries failures itself, so that it can log and count them.
func (p *Persister) newDeadLetterWriter() *kafka.Writer {
	return &kafka.Writer{
		Addr:                   kafka.TCP(p.cfg.brokers...),
		Transport:              p.transport,
		Balancer:               &kafka.Hash{},
		RequiredAcks:           kafka.RequireAll,
		MaxAttempts:            1,
		BatchTimeout:           time.Millisecond,
		BatchBytes:             persisterDLQMaxMessageBytes + 64<<10,
		WriteTimeout:           10 * time.Second,
		AllowAutoTopicCreation: false,
	}
}

// ensureDeadLetterTopic creates the dead-letter topic when it is missing.
// Transient failures are retried until ctx ends; others are returned.
func (p *Persister) ensureDeadLetterTopic(ctx context.Context) error {
	client := &kafka.Client{Addr: kafka.TCP(p.cfg.brokers...), Transport: p.transport, Timeout: 10 * time.Second}
	name := p.cfg.deadLetterTopic
	for attempt := 1; ; attempt++ {
		res, err := client.CreateTopics(ctx, &kafka.CreateTopicsRequest{Topics: []kafka.TopicConfig{{
			Topic:             name,
			NumPartitions:     1,
			ReplicationFactor: -1, // the brokers' default.replication.factor
			ConfigEntries: []kafka.ConfigEntry{
				{ConfigName: "retention.ms", ConfigValue: strconv.FormatInt(p.cfg.deadLetterRetention.Milliseconds(), 10)},
				{ConfigName: "max.message.bytes", ConfigValue: strconv.Itoa(persisterDLQMaxMessageBytes)},
			},
		}}})
		if err == nil {
			err = res.Errors[name]
		}
		if err == nil {
			p.log.Info("persister created the dead-letter topic", "topic", name,
				"retention", p.cfg.deadLetterRetention)
			return nil
		}
		if errors.Is(err, kafka.TopicAlreadyExists) {
			return nil
		}
		// kafka-go reports an unreachable cluster as BrokerNotAvailable,
		// which it does not call temporary: a persister started before its
		// brokers must wait for them, not exit.
		var kerr kafka.Error
		if errors.As(err, &kerr) && !kerr.Temporary() && kerr != kafka.BrokerNotAvailable {
			return fmt.Errorf("kafkastore: create dead-letter topic %q: %w (create it by hand, or name an existing one with WithDeadLetterTopic)", name, err)
		}
		if cause := unmaskConnectError(ctx, p.transport, p.cfg.brokers, err); isAuthError(cause) {
			p.log.Error("persister cannot authenticate to the Kafka brokers; retrying",
				"topic", name, "attempt", attempt, "err", cause, "hint", authHint)
		} else {
			p.log.Warn("persister cannot create the dead-letter topic yet; retrying",
				"topic", name, "attempt", attempt, "err", cause)
		}
		if !persisterSleep(ctx, p.backoff(attempt)) {
			return ctx.Err()
		}
	}
}

// deadLetter publishes rs to the dead-letter topic, retrying until the
// brokers take them or ctx ends. It reports whether they were published:
// a record not published must not be settled.
func (p *Persister) deadLetter(ctx context.Context, rs []*persistRecord) bool {
	if len(rs) == 0 {
		return true
	}
	msgs := make([]kafka.Message, len(rs))
	for i, r := range rs {
		msgs[i] = deadLetterMessage(p.cfg.deadLetterTopic, r)
	}
	for attempt := 1; ; attempt++ {
		err := p.dlqWriter.WriteMessages(ctx, msgs...)
		if err == nil {
			for _, r := range rs {
				p.log.Warn("persister dead-lettered a record",
					"topic", r.msg.Topic, "partition", r.msg.Partition, "offset", r.msg.Offset,
					"reason", r.deadReason, "err", r.deadErr, "deadLetterTopic", p.cfg.deadLetterTopic)
			}
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		p.stats.deadLetterRetries.Add(1)
		p.log.Error("persister cannot publish to the dead-letter topic; retrying, the partition waits",
			"deadLetterTopic", p.cfg.deadLetterTopic, "records", len(rs),
			"topic", rs[0].msg.Topic, "partition", rs[0].msg.Partition, "offset", rs[0].msg.Offset,
			"attempt", attempt, "err", err)
		if !persisterSleep(ctx, p.backoff(attempt)) {
			return false
		}
	}
}
