package kafkaconn

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"time"

	"github.com/segmentio/kafka-go"
	metadataapi "github.com/segmentio/kafka-go/protocol/metadata"
)

// Topic configuration keys set on the topics the Store and the Persister create.
const (
	ConfigRetentionMs     = "retention.ms"
	ConfigMaxMessageBytes = "max.message.bytes"
	ConfigMinInSync       = "min.insync.replicas"
)

// TopicSpec describes a topic to create when it is missing.
type TopicSpec struct {
	Name              string
	Partitions        int           // > 0
	ReplicationFactor int           // -1: the broker's default.replication.factor
	Retention         time.Duration // 0: the broker's default; < 0: unlimited
	MaxMessageBytes   int           // 0: the broker's default
	MinInSyncReplicas int           // 0: the broker's default
}

func (s TopicSpec) configEntries() []kafka.ConfigEntry {
	var entries []kafka.ConfigEntry
	if s.Retention != 0 {
		ms := int64(-1)
		if s.Retention > 0 {
			ms = s.Retention.Milliseconds()
		}
		entries = append(entries, kafka.ConfigEntry{ConfigName: ConfigRetentionMs, ConfigValue: strconv.FormatInt(ms, 10)})
	}
	if s.MaxMessageBytes > 0 {
		entries = append(entries, kafka.ConfigEntry{ConfigName: ConfigMaxMessageBytes, ConfigValue: strconv.Itoa(s.MaxMessageBytes)})
	}
	if s.MinInSyncReplicas > 0 {
		entries = append(entries, kafka.ConfigEntry{ConfigName: ConfigMinInSync, ConfigValue: strconv.Itoa(s.MinInSyncReplicas)})
	}
	return entries
}

// MinInSyncFor is the min.insync.replicas of a topic created with
// replication factor rf: 2 from 3 replicas on, so that an acks=all write
// acknowledged by a lone leader (its followers out of sync) is refused
// rather than lost with that leader. 0 (the broker's default) below.
func MinInSyncFor(rf int) int {
	if rf >= 3 {
		return 2
	}
	return 0
}

// EnsureTopic creates the topic described by spec unless it exists, as
// OpenWhisk's ensureTopic. It reports whether it created the topic; an
// existing topic keeps its configuration.
//
// It goes through a kafka.Client on transport, the transport of the writer
// that will publish to the topic: a successful creation refreshes that
// transport's metadata cache, and awaitTopic covers the topic that existed
// already. The shared default transport would serve a stale cache for up to
// 6 s.
func EnsureTopic(ctx context.Context, transport *kafka.Transport, brokers []string, spec TopicSpec) (created bool, err error) {
	client := &kafka.Client{Addr: kafka.TCP(brokers...), Transport: transport}
	res, err := client.CreateTopics(ctx, &kafka.CreateTopicsRequest{Topics: []kafka.TopicConfig{{
		Topic:             spec.Name,
		NumPartitions:     spec.Partitions,
		ReplicationFactor: spec.ReplicationFactor,
		ConfigEntries:     spec.configEntries(),
	}}})
	if err != nil {
		return false, fmt.Errorf("create topic %q: %w", spec.Name, UnmaskConnectError(ctx, transport, kafka.TCP(brokers...), err))
	}
	switch err := res.Errors[spec.Name]; {
	case err == nil:
		return true, awaitTopic(ctx, transport, brokers, spec.Name)
	case errors.Is(err, kafka.TopicAlreadyExists):
		return false, awaitTopic(ctx, transport, brokers, spec.Name)
	case errors.Is(err, kafka.RequestTimedOut):
		// A ZooKeeper-mode controller (Kafka before 4.0) answers
		// CreateTopics only once every broker serves the topic, and times
		// out after the request's 2 s on a busy cluster while the creation
		// goes on: wait for it as for a topic that exists.
		return true, awaitTopic(ctx, transport, brokers, spec.Name)
	default:
		return false, fmt.Errorf("create topic %q: %w", spec.Name, err)
	}
}

// awaitTopic returns once transport's metadata cache knows topic, so that
// the first write does not fail with UnknownTopicOrPartition. Asking with
// AllowAutoTopicCreation is what makes kafka-go's transport bypass and then
// refresh its cache; the topic exists, so nothing is auto-created.
func awaitTopic(ctx context.Context, transport *kafka.Transport, brokers []string, topic string) error {
	addr := kafka.TCP(brokers...)
	for {
		r, err := transport.RoundTrip(ctx, addr, &metadataapi.Request{TopicNames: []string{topic}, AllowAutoTopicCreation: true})
		if err != nil {
			return fmt.Errorf("metadata of topic %q: %w", topic, err)
		}
		for _, t := range r.(*metadataapi.Response).Topics {
			if t.Name == topic && t.ErrorCode == 0 && len(t.Partitions) > 0 {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("topic %q does not appear in the cluster metadata: %w", topic, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// TopicMaxMessageBytes returns the topic's effective max.message.bytes, or 0
// when the broker does not say.
func TopicMaxMessageBytes(ctx context.Context, transport *kafka.Transport, brokers []string, topic string) (int, error) {
	client := &kafka.Client{Addr: kafka.TCP(brokers...), Transport: transport}
	res, err := client.DescribeConfigs(ctx, &kafka.DescribeConfigsRequest{Resources: []kafka.DescribeConfigRequestResource{{
		ResourceType: kafka.ResourceTypeTopic,
		ResourceName: topic,
		ConfigNames:  []string{ConfigMaxMessageBytes},
	}}})
	if err != nil {
		return 0, fmt.Errorf("describe topic %q: %w", topic, err)
	}
	for _, r := range res.Resources {
		if r.Error != nil {
			return 0, fmt.Errorf("describe topic %q: %w", topic, r.Error)
		}
		for _, e := range r.ConfigEntries {
			if e.ConfigName == ConfigMaxMessageBytes {
				n, err := strconv.Atoi(e.ConfigValue)
				if err != nil {
					return 0, fmt.Errorf("topic %q: %s = %q: %w", topic, ConfigMaxMessageBytes, e.ConfigValue, err)
				}
				return n, nil
			}
		}
	}
	return 0, nil
}

var validTopicName = regexp.MustCompile(`^[a-zA-Z0-9._-]{1,249}$`)

// CheckName returns an error unless name is a valid Kafka topic name (also
// the rule for a group instance id): 1 to 249 characters of [a-zA-Z0-9._-],
// neither "." nor "..".
func CheckName(what, name string) error {
	if !validTopicName.MatchString(name) || name == "." || name == ".." {
		return fmt.Errorf("%s %q: want 1 to 249 characters of [a-zA-Z0-9._-]", what, name)
	}
	return nil
}
