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
//
// The store-level check (OpenWhisk's storeAfterCheck) applies to every
// activation, blocking ones included. A blocking ack carries its activation
// whatever the decision, since the controller answers the caller with it;
// when the activation is not to be stored, the ack record gets the header
// kafkastore.HeaderStoreSkip, which the persister honours and the Scala
// controller never reads.
//
// Acks are written for OpenWhisk master's controllers unless WithAckEra
// says otherwise (see codec.Era).
package invoker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/go-whisk/activationstore/codec"
	"github.com/go-whisk/activationstore/kafkastore"
	"github.com/go-whisk/activationstore/store"
)

// AckPublisher sends an acknowledgement record to a topic. A
// *kafkastore.Store is one: with WithSpool, its PublishAck returns once
// the ack is fdatasynced in the local spool, so that the only copy of a
// blocking activation survives a Kafka outage and a crash of the invoker.
type AckPublisher interface {
	PublishAck(ctx context.Context, topic string, key, value []byte, headers ...kafka.Header) error
}

// Job is what the invoker knows about the invocation an activation belongs to.
type Job struct {
	// Controller is the instance of the controller waiting for the ack:
	// acks go to topic "completed<Controller>".
	Controller int
	Blocking   bool
	// TransID is the activation message's transaction id. Its
	// ExtraLogging (X-OW-EXTRA-LOGGING on the request) forces storing, as
	// transid.meta.extraLogging does in OpenWhisk; it also replaces
	// User.TransactionID and User.ExtraLogging.
	TransID codec.TransactionID
	User    store.UserContext
}

// Invoker completes activations: acks and storage.
type Invoker struct {
	instance codec.InstanceID
	store    store.Store
	acks     AckPublisher
	levels   store.Levels
	era      codec.Era
	logger   *slog.Logger
}

type config struct {
	store  store.Store
	acks   AckPublisher
	levels store.Levels
	era    codec.Era
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

// WithAckEra sets which OpenWhisk controllers read the acks: codec.EraMaster
// (the default: OpenWhisk 1.0.0 and later) or codec.EraPR (the controllers
// PR #4632 targets, which read "invoker" and v1 instance ids).
func WithAckEra(e codec.Era) Option { return func(c *config) { c.era = e } }

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
	if c.era != codec.EraMaster && c.era != codec.EraPR {
		return nil, fmt.Errorf("invoker: unknown ack era %v", c.era)
	}
	inv := &Invoker{
		instance: codec.InstanceID{Type: "invoker", Instance: instance, UserMemory: c.memory, UniqueName: "invoker" + strconv.Itoa(instance)},
		store:    c.store,
		acks:     c.acks,
		levels:   c.levels,
		era:      c.era,
		logger:   c.logger,
	}
	// Fail now, not on the first ack, on an id no controller can read
	// (a user memory that is not a byte size).
	if _, err := codec.Marshal(&codec.CompletionMessage{TransID: codec.TransactionID{ID: "sid_invoker"},
		ActivationID: "0", Instance: inv.instance, Era: inv.era}); err != nil {
		return nil, fmt.Errorf("invoker: %w", err)
	}
	return inv, nil
}

// AckTopic is the topic on which controller number controller reads acks.
func AckTopic(controller int) string { return "completed" + strconv.Itoa(controller) }

// Complete acknowledges a finished activation and stores it when the store
// levels and the user admit it: a non-blocking one through the activation
// store, a blocking one through its ack (the persister stores it from
// there, unless the ack is marked kafkastore.HeaderStoreSkip). It returns
// once both are durable.
func (inv *Invoker) Complete(ctx context.Context, job Job, a *store.Activation) error {
	if err := store.ValidateActivation(a); err != nil {
		return fmt.Errorf("invoker: complete: %w", err)
	}
	if job.TransID.ID == "" {
		job.TransID = codec.TransactionID{ID: "sid_invoker", Start: time.Now()}
	}
	// OpenWhisk's storeAfterCheck reads extra logging from the transaction
	// id, the one in the activation message.
	uc := job.User
	uc.TransactionID, uc.ExtraLogging = job.TransID.ID, job.TransID.ExtraLogging
	keep := store.ShouldStore(a, job.Blocking, inv.levels, uc)

	sysErr := a.Response.StatusCode == store.StatusWhiskError
	var (
		ack     codec.Message
		headers []kafka.Header
	)
	if job.Blocking {
		// The controller needs the activation whatever the store decision.
		ack = &codec.CombinedMessage{TransID: job.TransID, Response: a, IsSystemError: &sysErr, Instance: inv.instance, Era: inv.era}
		if !keep {
			headers = []kafka.Header{{Key: kafkastore.HeaderStoreSkip, Value: []byte(skipReason(uc))}}
		}
	} else {
		// OpenWhisk shrinks every ack of a non-blocking invocation: the
		// controller only needs the slot back.
		ack = &codec.CompletionMessage{TransID: job.TransID, ActivationID: a.ActivationID, IsSystemError: &sysErr, Instance: inv.instance, Era: inv.era}
	}
	value, err := codec.Marshal(ack)
	if err != nil {
		return fmt.Errorf("invoker: encode ack of %s: %w", a.ActivationID, err)
	}
	topic := AckTopic(job.Controller)
	if err := inv.acks.PublishAck(ctx, topic, []byte(a.ActivationID), value, headers...); err != nil {
		inv.logger.ErrorContext(ctx, "ack failed", "activationId", a.ActivationID, "topic", topic, "error", err)
		return fmt.Errorf("invoker: ack %s on %s: %w", a.ActivationID, topic, err)
	}
	switch {
	case !keep:
		inv.logger.InfoContext(ctx, "activation not stored", "activationId", a.ActivationID,
			"blocking", job.Blocking, "reason", skipReason(uc))
	case job.Blocking:
		// stored by the persister from the ack
	default:
		if _, err := inv.store.Store(ctx, a, uc); err != nil {
			inv.logger.ErrorContext(ctx, "store failed", "activationId", a.ActivationID, "error", err)
			return fmt.Errorf("invoker: store %s: %w", a.ActivationID, err)
		}
	}
	return nil
}

// skipReason says why store.ShouldStore refused, as HeaderStoreSkip's value.
func skipReason(uc store.UserContext) string {
	if uc.StoreActivations != nil && !*uc.StoreActivations {
		return kafkastore.StoreSkipUser
	}
	return kafkastore.StoreSkipLevel
}
