// Package invoker sketches the completion path of an OpenWhisk invoker
// written in Go, to show how a service swaps its activation store in through
// a constructor option.
//
// When an activation finishes, an OpenWhisk invoker with out-of-band log
// collection (LogDriverLogStore) does two things:
//   - it acknowledges to the controller on the controller's ack topic
//     "completed<N>": a CombinedCompletionAndResultMessage carrying the
//     activation for a blocking invocation (the persister persists it from
//     there), a CompletionMessage for a non-blocking one;
//   - it stores non-blocking activations through its activation store after
//     the store-level check. With a kafkastore.Store that is a publish to
//     "completed-others"; with a CouchDB store it would be a database write
//     on the hot path.
package invoker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/go-whisk/activationstore/codec"
	"github.com/go-whisk/activationstore/store"
)

// AckPublisher sends an acknowledgement record to a topic.
type AckPublisher interface {
	PublishAck(ctx context.Context, topic string, key, value []byte) error
}

// Job is what the invoker knows about the invocation an activation belongs to.
type Job struct {
	// Controller is the instance of the controller waiting for the ack:
	// acks go to topic "completed<Controller>".
	Controller int
	Blocking   bool
	TransID    codec.TransactionID
	User       store.UserContext
}

// Invoker completes activations: acks and storage.
type Invoker struct {
	instance codec.InstanceID
	store    store.Store
	acks     AckPublisher
	levels   store.Levels
	logger   *slog.Logger
}

type config struct {
	store  store.Store
	acks   AckPublisher
	levels store.Levels
	logger *slog.Logger
	memory string
}

// Option configures New.
type Option func(*config)

// WithActivationStore sets where activations are stored: a kafkastore.Store
// in production, primary/memory in unit tests. Required.
func WithActivationStore(s store.Store) Option { return func(c *config) { c.store = s } }

// WithAckPublisher sets how acks reach the controllers. Required.
func WithAckPublisher(p AckPublisher) Option { return func(c *config) { c.acks = p } }

// WithStoreLevels sets the store levels of blocking and non-blocking
// activations (OpenWhisk's store-*-result-level). The default stores all.
func WithStoreLevels(l store.Levels) Option { return func(c *config) { c.levels = l } }

// WithLogger sets the logger; the default discards.
func WithLogger(l *slog.Logger) Option { return func(c *config) { c.logger = l } }

// WithUserMemory sets the memory the invoker announces in its instance id
// (default "1024 MB").
func WithUserMemory(m string) Option { return func(c *config) { c.memory = m } }

// New returns invoker number instance.
func New(instance int, opts ...Option) (*Invoker, error) {
	c := config{logger: slog.New(slog.DiscardHandler), memory: "1024 MB"}
	for _, o := range opts {
		o(&c)
	}
	if c.store == nil {
		return nil, errors.New("invoker: no activation store: pass WithActivationStore")
	}
	if c.acks == nil {
		return nil, errors.New("invoker: no ack publisher: pass WithAckPublisher")
	}
	if instance < 0 {
		return nil, fmt.Errorf("invoker: instance %d is negative", instance)
	}
	return &Invoker{
		instance: codec.InstanceID{Type: "invoker", Instance: instance, UserMemory: c.memory, UniqueName: "invoker" + strconv.Itoa(instance)},
		store:    c.store,
		acks:     c.acks,
		levels:   c.levels,
		logger:   c.logger,
	}, nil
}

// AckTopic is the topic on which controller number controller reads acks.
func AckTopic(controller int) string { return "completed" + strconv.Itoa(controller) }

// Complete acknowledges a finished activation and, for a non-blocking one,
// stores it. It returns once both are durable (or skipped by the store level).
func (inv *Invoker) Complete(ctx context.Context, job Job, a *store.Activation) error {
	if err := store.ValidateActivation(a); err != nil {
		return fmt.Errorf("invoker: complete: %w", err)
	}
	if job.TransID.ID == "" {
		job.TransID = codec.TransactionID{ID: "sid_invoker", Start: time.Now()}
	}
	sysErr := a.Response.StatusCode == store.StatusWhiskError
	var ack codec.Message
	if job.Blocking {
		ack = &codec.CombinedMessage{TransID: job.TransID, Response: a, IsSystemError: &sysErr, Instance: inv.instance}
	} else {
		// OpenWhisk shrinks every ack of a non-blocking invocation: the
		// controller only needs the slot back.
		ack = &codec.CompletionMessage{TransID: job.TransID, ActivationID: a.ActivationID, IsSystemError: &sysErr, Instance: inv.instance}
	}
	value, err := codec.Marshal(ack)
	if err != nil {
		return fmt.Errorf("invoker: encode ack of %s: %w", a.ActivationID, err)
	}
	topic := AckTopic(job.Controller)
	if err := inv.acks.PublishAck(ctx, topic, []byte(a.ActivationID), value); err != nil {
		inv.logger.ErrorContext(ctx, "ack failed", "activationId", a.ActivationID, "topic", topic, "error", err)
		return fmt.Errorf("invoker: ack %s on %s: %w", a.ActivationID, topic, err)
	}
	if job.Blocking {
		return nil // the persister persists it from the ack
	}
	if _, stored, err := store.StoreAfterCheck(ctx, inv.store, a, false, inv.levels, job.User); err != nil {
		inv.logger.ErrorContext(ctx, "store failed", "activationId", a.ActivationID, "error", err)
		return fmt.Errorf("invoker: store %s: %w", a.ActivationID, err)
	} else if !stored {
		inv.logger.InfoContext(ctx, "activation not stored by store level", "activationId", a.ActivationID, "level", inv.levels.NonBlocking)
	}
	return nil
}
