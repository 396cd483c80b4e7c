package kafkastore

import (
	"context"
	"fmt"
	"time"

	"github.com/segmentio/kafka-go"
)

// noteRetentionLoss accounts for records retention deleted before the
// persister read them. next is the offset the persister expected to read
// next; got the offset it read instead (-1: none yet). kafka-go moves a
// reader whose offset fell below the log start to the log start without
// a word (at partition start) or with a log line only (mid-read); this
// asks for the partition's log start and, when it is past next, counts
// and logs the offsets skipped. It returns the log start, or -1 when
// unknown.
//
// A gap in offsets is not always a loss (a transaction marker takes an
// offset), hence the question to the broker. Offsets lost may include
// such markers, so the count is an upper bound on the records lost.
func (p *Persister) noteRetentionLoss(ctx context.Context, ps *persistPartition, next, got int64) int64 {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	client := &kafka.Client{Addr: kafka.TCP(p.cfg.brokers...), Transport: p.transport}
	res, err := client.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{
		ps.topic: {kafka.FirstOffsetOf(ps.partition)},
	}})
	if err == nil && len(res.Topics[ps.topic]) != 1 {
		err = fmt.Errorf("no answer for partition %d", ps.partition)
	}
	if err == nil {
		err = res.Topics[ps.topic][0].Error
	}
	if err != nil {
		if ctx.Err() == nil {
			p.log.Debug("persister cannot read a partition's log start offset", "topic", ps.topic, "partition", ps.partition, "err", err)
		}
		return -1
	}
	logStart := res.Topics[ps.topic][0].FirstOffset
	upTo := logStart
	if got >= 0 {
		upTo = min(upTo, got)
	}
	if lost := upTo - next; lost > 0 {
		p.stats.lostToRetention.Add(lost)
		p.log.Warn("persister lost records to retention: they were deleted from the topic before they were persisted; raise the topic's retention.ms or persist faster",
			"topic", ps.topic, "partition", ps.partition, "fromOffset", next, "toOffset", upTo, "records", lost)
	}
	return logStart
}
