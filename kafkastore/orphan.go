package kafkastore

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/segmentio/kafka-go"
)

// leaveOrphan takes memberID, the persister's member of its last
// generation, out of the consumer group.
//
// When a rejoin fails, kafka-go's ConsumerGroup forgets its member id and
// joins again as a new member (segmentio/kafka-go#1215); the LeaveGroup it
// sends for the old id first goes where the rejoin failed. After the loss
// of the group coordinator that is the lost node, and the new coordinator,
// which restores the old member from the offsets topic, holds the
// rebalance until that member's session expires: the whole group stops
// consuming for the session timeout (30 s by default). So the persister
// sends the LeaveGroup again, to whichever node coordinates the group now,
// until the member is gone or has expired anyway.
func (p *Persister) leaveOrphan(ctx context.Context, memberID string) {
	ctx, cancel := context.WithTimeout(ctx, p.cfg.sessionTimeout+p.cfg.rebalanceTimeout)
	defer cancel()
	client := &kafka.Client{Addr: kafka.TCP(p.cfg.brokers...), Transport: p.transport, Timeout: 5 * time.Second}
	for attempt := 1; ; attempt++ {
		// kafka-go decodes LeaveGroup responses v1+ with the throttle time
		// and the error code swapped, so that a refusal (the coordinator
		// moving or loading the group) reads as success: only a
		// description of the group tells.
		_, _ = client.LeaveGroup(ctx, &kafka.LeaveGroupRequest{
			GroupID: p.cfg.groupID,
			Members: []kafka.LeaveGroupRequestMember{{ID: memberID}},
		})
		err := p.memberGone(ctx, client, memberID)
		if err == nil {
			p.log.Info("persister took its previous member out of the group, so that the rebalance need not wait for it to expire",
				"member", memberID, "attempts", attempt)
			return
		}
		if !persisterSleep(ctx, min(p.backoff(attempt), time.Second)) {
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				p.log.Warn("persister could not take its previous member out of the group; the coordinator has expired it by now",
					"member", memberID, "attempts", attempt, "err", err)
			}
			return
		}
	}
}

// memberGone returns nil when the group's coordinator describes the group
// without memberID.
func (p *Persister) memberGone(ctx context.Context, client *kafka.Client, memberID string) error {
	res, err := client.DescribeGroups(ctx, &kafka.DescribeGroupsRequest{GroupIDs: []string{p.cfg.groupID}})
	if err != nil {
		return err
	}
	if len(res.Groups) != 1 {
		return fmt.Errorf("kafkastore: DescribeGroups answered %d groups for one", len(res.Groups))
	}
	g := res.Groups[0]
	if g.Error != nil {
		return g.Error
	}
	if slices.ContainsFunc(g.Members, func(m kafka.DescribeGroupsResponseMember) bool { return m.MemberID == memberID }) {
		return fmt.Errorf("kafkastore: member %s still in group %s (%s)", memberID, p.cfg.groupID, g.GroupState)
	}
	return nil
}
