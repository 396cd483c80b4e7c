package persister

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kversion"

	"github.com/go-whisk/activationstore/internal/kafkatest"
	"github.com/go-whisk/activationstore/primary/memory"
)

// joinGroupV1Only is what kafka-go up to v0.4.47 sent: JoinGroup v1 and
// nothing newer.
func joinGroupV1Only() []persisterAPI {
	apis := slices.Clone(persisterAPIs)
	for i := range apis {
		if apis[i].name == "JoinGroup" {
			apis[i].versions = []int16{1}
		}
	}
	return apis
}

// runUntilError runs p for at most limit and returns what Run returned.
func runUntilError(t *testing.T, p *Persister, limit time.Duration) (time.Duration, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	start := time.Now()
	err := p.Run(ctx)
	return time.Since(start), err
}

// TestPersisterOnKafka40 runs the persister against real Apache Kafka
// 4.0.0 and 4.0.1. Kafka 4.0.0 dropped JoinGroup v0-v1 (KIP-896) and 4.0.1
// took them back (KAFKA-19444): kafka-go v0.4.51 negotiates v2, so both
// work; a client that can send only v1, as kafka-go did up to v0.4.47,
// makes Run fail at once on 4.0.0 with an error naming the cause and the
// fix, and works on 4.0.1.
func TestPersisterOnKafka40(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Apache Kafka 4.0.0 and 4.0.1: skipped under -short")
	}
	for _, version := range []string{"4.0.0", "4.0.1"} {
		t.Run(version, func(t *testing.T) {
			b := kafkatest.StartApache(t, kafkatest.WithVersion(version))

			if version == "4.0.0" {
				old := newTestPersister(t, b, memory.New(), WithTopicPattern(exactTopics(kafkatest.Topic(t, "none"))))
				old.apis = joinGroupV1Only()
				took, err := runUntilError(t, old, 20*time.Second)
				var verr *BrokerVersionError
				if !errors.As(err, &verr) || !errors.Is(err, ErrUnsupportedBroker) {
					t.Fatalf("Run with a JoinGroup v1 client on Kafka %s returned %v after %v; want a *BrokerVersionError", version, err, took)
				}
				if verr.API != "JoinGroup" || verr.Min != 2 || took > 10*time.Second {
					t.Errorf("error %+v after %v: want JoinGroup, broker minimum 2, within 10s", verr, took)
				}
				for _, want := range []string{"JoinGroup", "KAFKA-19444", "4.0.1 or newer", b.Addr()} {
					if !strings.Contains(err.Error(), want) {
						t.Errorf("error %q does not name %q", err, want)
					}
				}
				t.Logf("Run failed in %v: %v", took.Round(time.Millisecond), err)
			} else {
				conn, err := kafka.DialContext(context.Background(), "tcp", b.Addr())
				if err != nil {
					t.Fatal(err)
				}
				defer conn.Close()
				if err := checkAPIVersions(conn, b.Addr(), joinGroupV1Only()); err != nil {
					t.Fatalf("Kafka %s refuses a JoinGroup v1 client: %v", version, err)
				}
			}

			// kafka-go as pinned in go.mod consumes from either.
			topic := kafkatest.Topic(t, "completed-others")
			b.CreateTopic(t, topic, 2, nil)
			as := produceActivations(t, b, topic, "guest", 20)
			mem := memory.New()
			group := kafkatest.Topic(t, "group")
			p := newTestPersister(t, b, mem, WithTopicPattern(exactTopics(topic)), WithGroupID(group))
			runPersister(t, p)
			waitCommittedToEnd(t, b, group, topic, 2)
			checkAllStored(t, mem, "guest", as)
		})
	}
}

// TestPersisterFailsFastOnMissingAPI: a broker that does not offer a
// request the consumer group needs stops Run at once, with the request
// named.
func TestPersisterFailsFastOnMissingAPI(t *testing.T) {
	versions := kversion.Stable()
	versions.SetMaxKeyVersion(14, -1) // no SyncGroup
	b := kafkatest.StartFake(t, kfake.MaxVersions(versions))
	p := newTestPersister(t, b, memory.New(), WithTopicPattern(exactTopics(kafkatest.Topic(t, "none"))))
	took, err := runUntilError(t, p, 20*time.Second)
	var verr *BrokerVersionError
	if !errors.As(err, &verr) || verr.API != "SyncGroup" || verr.Offered {
		t.Fatalf("Run returned %v after %v; want a *BrokerVersionError for SyncGroup, not offered", err, took)
	}
	if !errors.Is(err, ErrUnsupportedBroker) || took > 10*time.Second || !strings.Contains(err.Error(), "does not offer SyncGroup") {
		t.Fatalf("Run returned %q after %v: want ErrUnsupportedBroker within 10s, naming SyncGroup", err, took)
	}
	if p.Ready() {
		t.Error("Ready after Run returned")
	}
}
