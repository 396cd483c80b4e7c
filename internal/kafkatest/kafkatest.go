// Package kafkatest starts a real Kafka-protocol broker in process for tests:
// franz-go's kfake, listening on 127.0.0.1 on a random port.
package kafkatest

import (
	"context"
	"fmt"
	"net"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kfake"
)

// Broker is an in-process Kafka cluster of one broker.
type Broker struct {
	cluster *kfake.Cluster
	addrs   []string
}

// Start starts a broker on 127.0.0.1 and a free port; it is closed when the
// test ends. Extra kfake options are appended (BrokerConfigs, SeedTopics…).
func Start(t testing.TB, opts ...kfake.Opt) *Broker {
	t.Helper()
	b, err := New(opts...)
	if err != nil {
		t.Fatalf("kafkatest: start in-process kfake broker: %v", err)
	}
	t.Cleanup(b.Close)
	return b
}

// New starts a broker that the caller must Close; for programs (the
// quickstart) rather than tests.
func New(opts ...kfake.Opt) (*Broker, error) {
	all := append([]kfake.Opt{
		kfake.NumBrokers(1),
		kfake.Ports(0),
		// Tests use short group session timeouts so that members that
		// stop or crash are replaced in seconds.
		kfake.GroupMinSessionTimeout(100 * time.Millisecond),
		kfake.ListenFn(func(network, _ string) (net.Listener, error) {
			return net.Listen(network, "127.0.0.1:0")
		}),
	}, opts...)
	c, err := kfake.NewCluster(all...)
	if err != nil {
		return nil, err
	}
	return &Broker{cluster: c, addrs: c.ListenAddrs()}, nil
}

// Close stops the broker and drops its data.
func (b *Broker) Close() { b.cluster.Close() }

// client returns an admin client on a transport of its own, so that topic
// metadata is never served from kafka-go's shared 6 s cache. Close the
// transport after use.
func (b *Broker) client() (*kafka.Client, *kafka.Transport) {
	tr := &kafka.Transport{}
	return &kafka.Client{Addr: kafka.TCP(b.addrs...), Transport: tr, Timeout: 10 * time.Second}, tr
}

// Addr is the address of the broker, "127.0.0.1:port".
func (b *Broker) Addr() string { return b.addrs[0] }

// Addrs are the bootstrap addresses.
func (b *Broker) Addrs() []string { return append([]string(nil), b.addrs...) }

// Cluster exposes kfake's control surface (fault injection, ControlKey…).
func (b *Broker) Cluster() *kfake.Cluster { return b.cluster }

// CreateTopic creates a topic with the given partitions and topic configs
// (e.g. "max.message.bytes"), failing the test on error.
func (b *Broker) CreateTopic(t testing.TB, name string, partitions int, configs map[string]string) {
	t.Helper()
	if err := b.CreateTopicContext(context.Background(), name, partitions, configs); err != nil {
		t.Fatalf("kafkatest: create topic %q: %v", name, err)
	}
}

// CreateTopicContext creates a topic; an existing topic is an error.
func (b *Broker) CreateTopicContext(ctx context.Context, name string, partitions int, configs map[string]string) error {
	entries := make([]kafka.ConfigEntry, 0, len(configs))
	for k, v := range configs {
		entries = append(entries, kafka.ConfigEntry{ConfigName: k, ConfigValue: v})
	}
	client, tr := b.client()
	defer tr.CloseIdleConnections()
	res, err := client.CreateTopics(ctx, &kafka.CreateTopicsRequest{Topics: []kafka.TopicConfig{{
		Topic: name, NumPartitions: partitions, ReplicationFactor: 1, ConfigEntries: entries,
	}}})
	if err != nil {
		return err
	}
	return res.Errors[name]
}

// EndOffsets returns the high-water mark of every partition of topic.
func (b *Broker) EndOffsets(ctx context.Context, topic string) (map[int]int64, error) {
	client, tr := b.client()
	defer tr.CloseIdleConnections()
	meta, err := client.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{topic}})
	if err != nil {
		return nil, err
	}
	if len(meta.Topics) != 1 || meta.Topics[0].Error != nil {
		return nil, fmt.Errorf("kafkatest: metadata of %q: %v", topic, meta.Topics)
	}
	req := map[string][]kafka.OffsetRequest{}
	for _, p := range meta.Topics[0].Partitions {
		req[topic] = append(req[topic], kafka.LastOffsetOf(p.ID))
	}
	res, err := client.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: req})
	if err != nil {
		return nil, err
	}
	out := map[int]int64{}
	for _, po := range res.Topics[topic] {
		if po.Error != nil {
			return nil, po.Error
		}
		out[po.Partition] = po.LastOffset
	}
	return out, nil
}

var seq atomic.Int64

var unsafeTopicChars = regexp.MustCompile(`[^a-zA-Z0-9._-]+`)

// Topic returns a topic name unique to this test and process, starting with
// prefix (use "completed" for names the persister's default pattern follows).
func Topic(t testing.TB, prefix string) string {
	name := unsafeTopicChars.ReplaceAllString(t.Name(), "_")
	if len(name) > 120 {
		name = name[:120]
	}
	return strings.Join([]string{prefix, name, strconv.FormatInt(seq.Add(1), 10)}, "-")
}
