package kafkatest

import (
	"context"
	"errors"
	"fmt"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// ActiveController returns the node id of the active controller: under
// KRaft the leader of the metadata quorum, as a live node answers
// DescribeQuorum (in combined mode that node is a broker too, so killing it
// fails over the controller and its partitions at once); under ZooKeeper
// the broker elected controller, as [Broker.Controller] finds it (-1
// during an election).
func (b *Broker) ActiveController(ctx context.Context) (int, error) {
	if b.apache == nil {
		return 0, errors.New("kafkatest: ActiveController: not an Apache Kafka cluster")
	}
	if b.ZooKeeper() {
		return b.Controller(ctx)
	}
	var errs []error
	for _, addr := range b.liveAddrs() {
		id, err := quorumLeader(ctx, addr)
		if err == nil {
			return id, nil
		}
		errs = append(errs, fmt.Errorf("%s: %w", addr, err))
	}
	return 0, fmt.Errorf("kafkatest: active controller: %w", errors.Join(errs...))
}

func quorumLeader(ctx context.Context, addr string) (int, error) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr))
	if err != nil {
		return 0, err
	}
	defer cl.Close()
	req := kmsg.NewPtrDescribeQuorumRequest()
	topic := kmsg.NewDescribeQuorumRequestTopic()
	topic.Topic = "__cluster_metadata"
	part := kmsg.NewDescribeQuorumRequestTopicPartition()
	part.Partition = 0
	topic.Partitions = append(topic.Partitions, part)
	req.Topics = append(req.Topics, topic)
	res, err := req.RequestWith(ctx, cl)
	if err != nil {
		return 0, err
	}
	if err := kerr.ErrorForCode(res.ErrorCode); err != nil {
		return 0, err
	}
	if len(res.Topics) == 0 || len(res.Topics[0].Partitions) == 0 {
		return 0, errors.New("DescribeQuorum answered no partition")
	}
	p := res.Topics[0].Partitions[0]
	if err := kerr.ErrorForCode(p.ErrorCode); err != nil {
		return 0, err
	}
	if p.LeaderID < 0 {
		return 0, errors.New("the quorum has no leader (an election in progress)")
	}
	return int(p.LeaderID), nil
}
