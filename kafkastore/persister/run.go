package persister

import (
	"context"
	"errors"
	"time"

	"github.com/go-whisk/activationstore/kafkastore/internal/kafkaconn"
)

// Run consumes until ctx ends, then shuts down gracefully: it stops
// fetching, lets writes in flight finish for up to 750 ms (or the drain
// timeout, WithDrainTimeout, when shorter), commits what is persisted,
// leaves the group (a dynamic member; a static one, WithGroupInstanceID,
// stays for its restart), and returns nil — within 2 s of ctx's end,
// whatever it was doing: joining, waiting for the group's assignment,
// fetching, retrying a write.
//
// Run keeps going through broker, network and primary failures, logging
// and retrying. It returns an error only when it cannot start: it is
// running already (ErrRunning), the dead-letter topic can be
// neither found nor created, a broker does not accept the request
// versions kafka-go sends (ErrUnsupportedBroker, a *BrokerVersionError
// naming the request and the fix), which no retry would cure, or another
// live persister took its group instance id (ErrGroupInstanceFenced).
func (p *Persister) Run(ctx context.Context) error { return p.run(ctx, true) }

// run is Run; without leave it returns without leaving the group, as a
// killed process would (for tests).
func (p *Persister) run(ctx context.Context, leave bool) error {
	if !p.running.CompareAndSwap(false, true) {
		return ErrRunning
	}
	defer p.running.Store(false)
	defer p.log.Info("persister stopped") // however Run returns: the service relies on it
	p.versionsChecked = false
	defer p.ready.Store(false)

	// The transport's background goroutines (metadata discovery) live as
	// long as its context: end them with Run, even when the brokers are
	// unreachable and a pool was opened but never used.
	transportCtx, stopTransport := context.WithCancel(context.Background())
	defer p.transport.CloseIdleConnections()
	defer stopTransport()
	p.transport.Context = transportCtx

	if err := p.ensureDeadLetterTopic(ctx); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	p.dlqWriter = p.newDeadLetterWriter()
	defer p.dlqWriter.Close()

	p.log.Info("persister running", "pattern", p.cfg.topicPattern.String(),
		"deadLetterTopic", p.cfg.deadLetterTopic, "primaryBatches", p.batch != nil,
		"groupInstanceId", p.cfg.groupInstanceID)
	member := newGroupMember(p)
	if leave {
		defer member.leave(persisterLeaveTimeout)
	}
	idle := false
	for attempt := 1; ctx.Err() == nil; {
		topics, err := p.discoverTopics(ctx)
		switch {
		case ctx.Err() != nil:
		case errors.Is(err, ErrUnsupportedBroker):
			p.log.Error("persister cannot consume from this broker", "err", err)
			return err
		case kafkaconn.IsAuthError(err):
			p.log.Error("persister cannot authenticate to the Kafka brokers; retrying", "attempt", attempt, "err", err, "hint", kafkaconn.AuthHint)
			kafkaconn.Sleep(ctx, p.retry.Wait(attempt))
			attempt++
		case err != nil:
			p.log.Warn("persister cannot list topics; retrying", "attempt", attempt, "err", err)
			kafkaconn.Sleep(ctx, p.retry.Wait(attempt))
			attempt++
		case len(topics) == 0:
			if !idle {
				p.log.Info("persister found no topic matching its pattern; waiting for one",
					"pattern", p.cfg.topicPattern.String(), "refresh", p.cfg.topicRefresh)
				idle = true
			}
			p.ready.Store(true)
			attempt = 1
			kafkaconn.Sleep(ctx, p.cfg.topicRefresh)
		default:
			idle, attempt = false, 1
			if err := p.consume(ctx, member, topics); err != nil {
				p.log.Error("persister stops", "err", err)
				return err
			}
		}
	}
	return nil
}

// Bounds of a shutdown, so that Run returns within 2 s of its context's
// end whatever it was doing: writes in flight get persisterShutdownDrain
// (or the drain timeout, when shorter), the last commit
// persisterFinalCommitTimeout, the LeaveGroup persisterLeaveTimeout.
const (
	persisterShutdownDrain      = 750 * time.Millisecond
	persisterFinalCommitTimeout = 750 * time.Millisecond
	persisterLeaveTimeout       = 250 * time.Millisecond
)

// consume follows topics in the consumer group until ctx ends or the set of
// matching topics changes; the caller then joins again with the new set.
// It returns an error only when this member was fenced.
func (p *Persister) consume(ctx context.Context, member *groupMember, topics persistedTopics) error {
	gctx, cancel := context.WithCancel(ctx)
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		p.watchTopics(gctx, topics, cancel)
	}()
	defer func() { cancel(); <-watched }()

	p.log.Info("persister following topics", "topics", topics.String())
	for {
		gen, err := member.join(gctx, topics)
		if gctx.Err() != nil {
			return nil
		}
		if err != nil {
			return err
		}
		p.runGeneration(ctx, gctx, member, gen)
		if gen.fenced.Load() {
			return ErrGroupInstanceFenced
		}
	}
}
