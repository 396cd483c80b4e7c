package persister

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/go-whisk/activationstore/internal/kafkatest"
	"github.com/go-whisk/activationstore/internal/logtest"
	"github.com/go-whisk/activationstore/kafkastore"
	"github.com/go-whisk/activationstore/primary/memory"
)

// setRetention sets a topic's retention.ms.
func setRetention(t *testing.T, b *kafkatest.Broker, topic string, ms string) {
	t.Helper()
	tr := b.Transport()
	defer tr.CloseIdleConnections()
	c := &kafka.Client{Addr: kafka.TCP(b.Addrs()...), Transport: tr, Timeout: 10 * time.Second}
	res, err := c.IncrementalAlterConfigs(context.Background(), &kafka.IncrementalAlterConfigsRequest{
		Resources: []kafka.IncrementalAlterConfigsRequestResource{{
			ResourceType: kafka.ResourceTypeTopic, ResourceName: topic,
			Configs: []kafka.IncrementalAlterConfigsRequestConfig{{Name: "retention.ms", Value: ms, ConfigOperation: kafka.ConfigOperationSet}},
		}},
	})
	if err == nil && len(res.Resources) == 1 {
		err = res.Resources[0].Error
	}
	if err != nil {
		t.Fatalf("set retention.ms=%s on %s: %v", ms, topic, err)
	}
}

// logStart returns the first offset still in the partition.
func logStart(t *testing.T, b *kafkatest.Broker, topic string, partition int) int64 {
	t.Helper()
	tr := b.Transport()
	defer tr.CloseIdleConnections()
	c := &kafka.Client{Addr: kafka.TCP(b.Addrs()...), Transport: tr, Timeout: 10 * time.Second}
	res, err := c.ListOffsets(context.Background(), &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{topic: {kafka.FirstOffsetOf(partition)}}})
	if err != nil || len(res.Topics[topic]) != 1 || res.Topics[topic][0].Error != nil {
		t.Fatalf("ListOffsets %s/%d: %v %v", topic, partition, err, res)
	}
	return res.Topics[topic][0].FirstOffset
}

// TestPersisterCountsRecordsRetentionDeleted: records deleted by retention
// while no persister ran are counted and logged when the group resumes,
// never skipped silently. Apache Kafka deletes them on its own schedule;
// kfake when told to.
func TestPersisterCountsRecordsRetentionDeleted(t *testing.T) {
	b := kafkatest.Start(t)
	topic := kafkatest.Topic(t, "completed-others")
	// Segments roll every 100 ms, so that retention can delete them.
	b.CreateTopic(t, topic, 1, map[string]string{"segment.ms": "100", "retention.ms": "-1"})
	group := kafkatest.Topic(t, "group")
	mem := memory.New()

	first := produceActivations(t, b, topic, "guest", 20)
	stop := runPersister(t, newTestPersister(t, b, mem, WithTopicPattern(exactTopics(topic)), WithGroupID(group)))
	waitCommittedToEnd(t, b, group, topic, 1)
	stop()

	produceActivations(t, b, topic, "guest", 10) // offsets 20-29: lost while nobody consumes
	setRetention(t, b, topic, "100")
	retentionSet := time.Now()
	waitUntil(t, 60*time.Second, "retention to delete offsets 0-29", func() bool {
		if b.Kind() == kafkatest.KindFake {
			time.Sleep(150 * time.Millisecond)
			b.Cluster().ApplyRetention() // kfake applies retention when told to
		}
		return logStart(t, b, topic, 0) == 30
	})
	t.Logf("retention deleted offsets 0-29 in %v", time.Since(retentionSet).Round(time.Millisecond))
	setRetention(t, b, topic, "-1")
	last := produceActivations(t, b, topic, "guest", 5) // offsets 30-34

	var logs logtest.Buffer
	logger := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelWarn}))
	p := newTestPersister(t, b, mem, WithTopicPattern(exactTopics(topic)), WithGroupID(group), kafkastore.WithLogger(logger))
	runPersister(t, p)
	waitCommittedToEnd(t, b, group, topic, 1)
	checkAllStored(t, mem, "guest", append(first, last...))
	if got := p.Stats().LostToRetention; len(got) != 1 || got[0] != (RetentionLoss{Topic: topic, Partition: 0, Records: 10}) {
		t.Errorf("LostToRetention = %+v, want 10 records of %s/0 (offsets 20-29)", got, topic)
	}
	if !strings.Contains(logs.String(), "lost to retention") || !strings.Contains(logs.String(), "records=10") ||
		!strings.Contains(logs.String(), "level=ERROR") {
		t.Errorf("no ERROR naming the 10 records lost; logs:\n%s", logs.String())
	}
}
