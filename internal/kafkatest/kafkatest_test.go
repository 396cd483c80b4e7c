package kafkatest_test

import (
	"context"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/go-whisk/activationstore/internal/kafkatest"
)

func TestBrokerRoundTrip(t *testing.T) {
	b := kafkatest.Start(t)
	topic := kafkatest.Topic(t, "completed")
	b.CreateTopic(t, topic, 3, map[string]string{"max.message.bytes": "2048"})

	w := &kafka.Writer{Addr: kafka.TCP(b.Addr()), Topic: topic, BatchTimeout: time.Millisecond, RequiredAcks: kafka.RequireAll}
	defer w.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := w.WriteMessages(ctx, kafka.Message{Key: []byte("k"), Value: []byte("v")}); err != nil {
		t.Fatalf("write: %v", err)
	}
	ends, err := b.EndOffsets(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	var total int64
	for _, o := range ends {
		total += o
	}
	if len(ends) != 3 || total != 1 {
		t.Fatalf("end offsets = %v, want 3 partitions holding 1 record", ends)
	}
	err = w.WriteMessages(ctx, kafka.Message{Value: make([]byte, 4096)})
	if err == nil {
		t.Fatal("a 4 KiB record on a topic with max.message.bytes=2048 was accepted")
	}
}
