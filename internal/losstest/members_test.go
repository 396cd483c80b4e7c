package losstest

import (
	"context"
	"io"
	"log/slog"
	"regexp"
	"testing"
	"time"

	"github.com/go-whisk/activationstore/internal/kafkatest"
	"github.com/go-whisk/activationstore/kafkastore"
	"github.com/go-whisk/activationstore/kafkastore/persister"
	"github.com/go-whisk/activationstore/store"
)

// member is one persister of a group, running in process.
type member struct {
	name   string
	p      *persister.Persister
	cancel context.CancelFunc
	done   chan error
}

// runMember runs p until its member is stopped.
func runMember(name string, p *persister.Persister) *member {
	ctx, cancel := context.WithCancel(context.Background())
	m := &member{name: name, p: p, cancel: cancel, done: make(chan error, 1)}
	go func() { m.done <- p.Run(ctx) }()
	return m
}

// startChaosMembers starts a persister per name in group, draining the
// topics of pattern into primary with the settings of the Kafka chaos
// tests: the default group timeouts (session 30 s, heartbeat 3 s), as in
// production, so that a coordinator's loss must not cost a session; small
// batches and quick retries. Their log goes to log. It returns once each
// has partitions; they stop at the end of the test, if not before.
func startChaosMembers(t *testing.T, primary store.Store, brokers []string, group string, pattern *regexp.Regexp, log io.Writer, names ...string) []*member {
	t.Helper()
	dlq := kafkatest.Topic(t, "dlq")
	var members []*member
	for _, name := range names {
		p, err := persister.New(primary,
			kafkastore.WithBrokers(brokers...),
			kafkastore.WithClientID(name),
			persister.WithGroupID(group),
			persister.WithTopicPattern(pattern),
			persister.WithDeadLetterTopic(dlq),
			kafkastore.WithLogger(slog.New(slog.NewTextHandler(log, nil)).With("member", name)),
			persister.WithBatch(500, 4<<20, 10*time.Millisecond),
			persister.WithRetryBackoff(50*time.Millisecond, time.Second),
			persister.WithCommitInterval(200*time.Millisecond),
			persister.WithDrainTimeout(2*time.Second),
		)
		if err != nil {
			t.Fatalf("persister.New: %v", err)
		}
		members = append(members, runMember(name, p))
	}
	t.Cleanup(func() {
		for _, m := range members {
			m.cancel()
		}
	})
	waitFor(t, time.Minute, "every persister to be assigned partitions", func() bool {
		for _, m := range members {
			if len(m.p.Stats().Partitions) == 0 {
				return false
			}
		}
		return true
	})
	return members
}

func (m *member) stop(t *testing.T) {
	t.Helper()
	m.cancel()
	select {
	case err := <-m.done:
		if err != nil {
			t.Errorf("%s: Run: %v", m.name, err)
		}
	case <-time.After(30 * time.Second):
		t.Errorf("%s: Run did not return within 30 s of cancel", m.name)
	}
}
