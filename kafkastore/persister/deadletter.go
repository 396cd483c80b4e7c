package persister

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/go-whisk/activationstore/kafkastore/internal/kafkaconn"
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
		Addr:                   p.cfg.conn.Addr(),
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
// Failures are retried until ctx ends, but a broker's answer that no retry
// will change, which is returned.
func (p *Persister) ensureDeadLetterTopic(ctx context.Context) error {
	spec := kafkaconn.TopicSpec{
		Name:              p.cfg.deadLetterTopic,
		Partitions:        1,
		ReplicationFactor: -1, // the brokers' default.replication.factor
		Retention:         p.cfg.deadLetterRetention,
		MaxMessageBytes:   persisterDLQMaxMessageBytes,
	}
	for attempt := 1; ; attempt++ {
		actx, cancel := context.WithTimeout(ctx, 10*time.Second)
		created, err := kafkaconn.EnsureTopic(actx, p.transport, p.cfg.conn.Brokers, spec)
		cancel()
		switch {
		case err == nil:
			if created {
				p.log.Info("persister created the dead-letter topic", "topic", spec.Name, "retention", spec.Retention)
			}
			return nil
		case ctx.Err() != nil:
			return ctx.Err()
		case kafkaconn.Permanent(err):
			return fmt.Errorf("persister: create dead-letter topic %q: %w (create it by hand, or name an existing one with WithDeadLetterTopic)", spec.Name, err)
		case kafkaconn.IsAuthError(err):
			p.log.Error("persister cannot authenticate to the Kafka brokers; retrying",
				"topic", spec.Name, "attempt", attempt, "err", err, "hint", kafkaconn.AuthHint)
		default:
			// An unreachable cluster too: a persister started before its
			// brokers waits for them, it does not exit.
			p.log.Warn("persister cannot create the dead-letter topic yet; retrying",
				"topic", spec.Name, "attempt", attempt, "err", err)
		}
		if !kafkaconn.Sleep(ctx, p.retry.Wait(attempt)) {
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
		if !kafkaconn.Sleep(ctx, p.retry.Wait(attempt)) {
			return false
		}
	}
}
