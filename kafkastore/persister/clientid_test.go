package persister

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/go-whisk/activationstore/internal/kafkatest"
	"github.com/go-whisk/activationstore/kafkastore"
	"github.com/go-whisk/activationstore/primary/memory"
)

// A persister joins its consumer group under its client id, the one given
// (WithClientID) or its default, never a null one: Kafka 2.7 drops the
// SyncGroup of a group holding a member without a client id (it cannot
// serialise the group), and kafka-go sends an empty transport ClientID as
// null in flexible request headers (JoinGroup v6+). CI runs it on Apache
// Kafka 2.7 and 4.x (KAFKATEST=apache) as well as on kfake.
func TestPersisterJoinsItsGroupUnderItsClientID(t *testing.T) {
	b := kafkatest.Start(t)
	topic := kafkatest.Topic(t, "completed")
	b.CreateTopic(t, topic, 2, nil)
	group := kafkatest.Topic(t, "group")
	named := "named-" + group

	mem := memory.New()
	pNamed := newTestPersister(t, b, mem, WithTopicPattern(exactTopics(topic)), WithGroupID(group), kafkastore.WithClientID(named))
	pDefault := newTestPersister(t, b, mem, WithTopicPattern(exactTopics(topic)), WithGroupID(group))
	defer runPersister(t, pNamed)()
	defer runPersister(t, pDefault)()

	tr := b.Transport()
	tr.ClientID = "describe-" + group
	t.Cleanup(tr.CloseIdleConnections)
	c := &kafka.Client{Addr: kafka.TCP(b.Addr()), Transport: tr}

	var ids []string
	waitUntil(t, 30*time.Second, "both persisters in the group, consuming", func() bool {
		ids = groupClientIDs(t, c, group)
		return len(ids) == 2 && pNamed.Ready() && pDefault.Ready()
	})
	if !slices.Contains(ids, named) {
		t.Errorf("group members' client ids %q, want one %q (WithClientID)", ids, named)
	}
	defaults := slices.DeleteFunc(slices.Clone(ids), func(id string) bool { return id == named })
	if len(defaults) != 1 || !strings.HasPrefix(defaults[0], "persister-") {
		t.Errorf("group members' client ids %q, want one persister-<host>-<pid>-<random> (the default)", ids)
	}

	// Records flow, so the generation really completed (SyncGroup included).
	as := produceActivations(t, b, topic, "guest", 10)
	waitUntil(t, 30*time.Second, "the records stored", func() bool { return mem.Len() == len(as) })
}
