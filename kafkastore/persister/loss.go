package persister

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/segmentio/kafka-go"
)

// RetentionLoss counts the records of one partition that Kafka deleted
// (retention, DeleteRecords) before the persister had stored them.
type RetentionLoss struct {
	Topic     string
	Partition int
	Records   int64
}

// retentionLosses remembers, per partition, how far losses were counted,
// so that a range read again after a rebalance is not counted twice.
type retentionLosses struct {
	mu      sync.Mutex
	through map[topicPartition]int64 // end (exclusive) of the ranges counted
	lost    map[topicPartition]int64
}

type topicPartition struct {
	topic     string
	partition int
}

// add counts the offsets [from, to) of ps as lost and returns how many of
// them were not counted before.
func (l *retentionLosses) add(topic string, partition int, from, to int64) int64 {
	key := topicPartition{topic, partition}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.through == nil {
		l.through, l.lost = map[topicPartition]int64{}, map[topicPartition]int64{}
	}
	if done, ok := l.through[key]; ok {
		from = max(from, done)
	}
	if to <= from {
		return 0
	}
	l.through[key] = to
	l.lost[key] += to - from
	return to - from
}

func (l *retentionLosses) snapshot() []RetentionLoss {
	l.mu.Lock()
	out := make([]RetentionLoss, 0, len(l.lost))
	for k, n := range l.lost {
		out = append(out, RetentionLoss{Topic: k.topic, Partition: k.partition, Records: n})
	}
	l.mu.Unlock()
	slices.SortFunc(out, func(a, b RetentionLoss) int {
		return cmp.Or(cmp.Compare(a.Topic, b.Topic), cmp.Compare(a.Partition, b.Partition))
	})
	return out
}

// checkRetention finds the records of ps from offset expected on that are
// gone: when the partition's log now starts after expected, the offsets
// from expected to the log start (or to next, the offset actually read,
// when that is lower) were deleted unread. Other gaps (transaction markers,
// compaction) lie above the log start and are not losses.
func (p *Persister) checkRetention(ctx context.Context, ps *persistPartition, expected, next int64) {
	logStart, err := p.logStartOffset(ctx, ps.topic, ps.partition)
	if err != nil {
		if ctx.Err() == nil {
			p.log.Warn("persister cannot read a partition's log start offset to check for records lost to retention",
				"topic", ps.topic, "partition", ps.partition, "err", err)
		}
		return
	}
	to := logStart
	if next >= 0 {
		to = min(to, next)
	}
	if n := p.losses.add(ps.topic, ps.partition, expected, to); n > 0 {
		p.log.Error("records deleted by Kafka before they were persisted: lost to retention; "+
			"raise the topic's retention.ms/retention.bytes or add persisters so that lag stays below it",
			"topic", ps.topic, "partition", ps.partition, "fromOffset", expected, "toOffset", to-1, "records", n)
	}
}

// logStartOffset asks the partition leader for the first offset it holds.
func (p *Persister) logStartOffset(ctx context.Context, topic string, partition int) (int64, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	client := &kafka.Client{Addr: p.cfg.conn.Addr(), Transport: p.transport}
	res, err := client.ListOffsets(ctx, &kafka.ListOffsetsRequest{
		Topics: map[string][]kafka.OffsetRequest{topic: {kafka.FirstOffsetOf(partition)}},
	})
	if err != nil {
		return 0, err
	}
	for _, po := range res.Topics[topic] {
		if po.Partition == partition {
			if po.Error != nil {
				return 0, po.Error
			}
			return po.FirstOffset, nil
		}
	}
	return 0, fmt.Errorf("persister: no log start offset for %s/%d in the reply", topic, partition)
}
