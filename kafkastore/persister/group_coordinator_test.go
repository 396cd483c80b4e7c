package persister

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/go-whisk/activationstore/internal/kafkatest"
	"github.com/go-whisk/activationstore/primary/memory"
)

// The group coordinator is lost for a second, as when its node dies: kfake
// answers heartbeats with NOT_COORDINATOR and coordinator lookups with
// COORDINATOR_NOT_AVAILABLE. kafka-go's ConsumerGroup then dropped its
// member id and joined as a new member, while the coordinator still held
// the old one and held the rebalance until that member's 30 s session
// expired. The persister keeps its member id through it, and consumes
// again within seconds.
func TestPersisterKeepsItsMemberThroughALostCoordinator(t *testing.T) {
	b := kafkatest.StartFake(t)
	topic := kafkatest.Topic(t, "completed")
	b.CreateTopic(t, topic, 2, nil)
	mem := memory.New()
	const session = 30 * time.Second
	p := newTestPersister(t, b, mem, WithTopicPattern(exactTopics(topic)),
		WithGroupTimeouts(session, session, 100*time.Millisecond))
	runPersister(t, p)
	waitUntil(t, 10*time.Second, "the first generation", func() bool { return len(p.Stats().Partitions) == 2 })
	first := p.Stats().Generation

	c := b.Cluster()
	var lostUntil atomic.Int64 // unix nanoseconds
	lost := func() bool { return time.Now().UnixNano() < lostUntil.Load() }
	c.ControlKey(kmsg.Heartbeat.Int16(), func(req kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		if !lost() {
			return nil, nil, false
		}
		resp := req.ResponseKind().(*kmsg.HeartbeatResponse)
		resp.ErrorCode = kerr.NotCoordinator.Code
		return resp, nil, true
	})
	c.ControlKey(kmsg.FindCoordinator.Int16(), func(req kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		if !lost() {
			return nil, nil, false
		}
		fr := req.(*kmsg.FindCoordinatorRequest)
		resp := fr.ResponseKind().(*kmsg.FindCoordinatorResponse)
		resp.ErrorCode = kerr.CoordinatorNotAvailable.Code
		for _, key := range fr.CoordinatorKeys { // v4+
			rc := kmsg.NewFindCoordinatorResponseCoordinator()
			rc.Key = key
			rc.ErrorCode = kerr.CoordinatorNotAvailable.Code
			resp.Coordinators = append(resp.Coordinators, rc)
		}
		return resp, nil, true
	})
	lostAt := time.Now()
	lostUntil.Store(lostAt.Add(time.Second).UnixNano())

	waitUntil(t, session/3, "a generation with every partition after the loss", func() bool {
		s := p.Stats()
		return time.Since(lostAt) > 2*time.Second && len(s.Partitions) == 2
	})
	rejoined := time.Since(lostAt)
	as := produceActivations(t, b, topic, "guest", 20)
	waitUntil(t, 10*time.Second, "the records produced after the rejoin to be stored", func() bool { return mem.Len() == len(as) })
	checkAllStored(t, mem, "guest", as)
	t.Logf("generation %d -> %d, %v after the coordinator was lost for 1 s (session timeout %v)",
		first, p.Stats().Generation, rejoined.Round(time.Millisecond), session)
}
