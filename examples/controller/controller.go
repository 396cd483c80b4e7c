// Package controller sketches the activations an OpenWhisk controller writes
// itself — trigger, sequence and conductor activations — and the reads its
// REST API serves, to show how a Go controller swaps its activation store in
// through a constructor option.
//
// With a kafkastore.Store, the controller's writes become publishes to
// "completed-others" (triggers are always non-blocking; sequences and
// conductors are blocking when the caller waits), while its reads go to the
// primary store behind the decorator.
package controller

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/go-whisk/activationstore/store"
)

// Controller writes and reads activations through its activation store.
type Controller struct {
	store  store.Store
	levels store.Levels
	logger *slog.Logger
	now    func() time.Time
}

type config struct {
	store  store.Store
	levels store.Levels
	logger *slog.Logger
}

// Option configures New.
type Option func(*config)

// WithActivationStore sets where activations are stored and read: a
// kafkastore.Store in production, primary/memory in unit tests. Required.
func WithActivationStore(s store.Store) Option { return func(c *config) { c.store = s } }

// WithStoreLevels sets the blocking and non-blocking store levels; the
// default stores all.
func WithStoreLevels(l store.Levels) Option { return func(c *config) { c.levels = l } }

// WithLogger sets the logger; the default discards.
func WithLogger(l *slog.Logger) Option { return func(c *config) { c.logger = l } }

// New returns a controller.
func New(opts ...Option) (*Controller, error) {
	c := config{logger: slog.New(slog.DiscardHandler)}
	for _, o := range opts {
		o(&c)
	}
	if c.store == nil {
		return nil, errors.New("controller: no activation store: pass WithActivationStore")
	}
	return &Controller{store: c.store, levels: c.levels, logger: c.logger, now: time.Now}, nil
}

// RuleOutcome is what firing one rule of a trigger produced.
type RuleOutcome struct {
	Rule, Action string // fully qualified names: "ns/rule", "ns/action"
	ActivationID string // the action's activation; "" when Err is set
	Err          string
}

// FireTrigger records a trigger activation as OpenWhisk's Triggers.activate:
// no end, no duration, no annotations, one log line per rule, stored as a
// non-blocking activation. A trigger that fired no rule records nothing.
func (c *Controller) FireTrigger(ctx context.Context, namespace, trigger string, payload json.RawMessage, rules []RuleOutcome, uc store.UserContext) (*store.Activation, error) {
	if len(rules) == 0 {
		return nil, nil
	}
	if payload == nil {
		payload = json.RawMessage(`{}`)
	}
	logs := make([]string, len(rules))
	for i, r := range rules {
		line := map[string]any{"rule": r.Rule, "action": r.Action, "statusCode": 0, "success": true, "activationId": r.ActivationID}
		if r.Err != "" {
			line = map[string]any{"rule": r.Rule, "action": r.Action, "statusCode": 1, "success": false, "error": r.Err}
		}
		b, err := json.Marshal(line)
		if err != nil {
			return nil, err
		}
		logs[i] = string(b)
	}
	a := &store.Activation{
		Namespace: namespace, Name: trigger, Subject: subjectOf(uc, namespace),
		ActivationID: NewActivationID(), Start: c.now().Truncate(time.Millisecond), End: store.NoEnd,
		Response: store.Response{StatusCode: store.StatusSuccess, Result: payload},
		Logs:     logs, Version: store.DefaultVersion, Annotations: []store.Annotation{},
	}
	return a, c.record(ctx, a, false, uc)
}

// SequenceResult describes a finished sequence (or conductor) activation.
type SequenceResult struct {
	Namespace, Name string
	Path            string // "ns/seq" or "ns/pkg/seq"
	Components      []*store.Activation
	Cause           string // the parent's activation id when not topmost
	Conductor       bool
	Start           time.Time
	WaitTime        time.Duration
}

// CompleteSequence records the sequence's own activation as OpenWhisk's
// SequenceActions: logs are the component ids, the response is the last
// component's, the duration the sum of the components'.
func (c *Controller) CompleteSequence(ctx context.Context, seq SequenceResult, blocking bool, uc store.UserContext) (*store.Activation, error) {
	if len(seq.Components) == 0 {
		return nil, errors.New("controller: a sequence has at least one component")
	}
	var total int64
	logs := make([]string, len(seq.Components))
	for i, comp := range seq.Components {
		logs[i] = comp.ActivationID
		total += comp.DurationMillis()
	}
	last := seq.Components[len(seq.Components)-1]
	end := seq.Start.Add(time.Duration(total) * time.Millisecond)
	ann := []store.Annotation{
		{Key: "topmost", Value: jsonBool(seq.Cause == "")},
		{Key: "path", Value: jsonString(seq.Path)},
		{Key: "kind", Value: jsonString("sequence")},
		{Key: "waitTime", Value: json.RawMessage(fmt.Sprint(seq.WaitTime.Milliseconds()))},
	}
	if seq.Cause != "" {
		ann = append(ann, store.Annotation{Key: "causedBy", Value: jsonString("sequence")})
	}
	if seq.Conductor {
		ann = append(ann, store.Annotation{Key: "conductor", Value: json.RawMessage(`true`)})
	}
	a := &store.Activation{
		Namespace: seq.Namespace, Name: seq.Name, Subject: subjectOf(uc, seq.Namespace),
		ActivationID: NewActivationID(), Start: seq.Start, End: end, Cause: seq.Cause,
		Response: last.Response, Logs: logs, Version: store.DefaultVersion,
		Annotations: ann, Duration: &total,
	}
	return a, c.record(ctx, a, blocking, uc)
}

func (c *Controller) record(ctx context.Context, a *store.Activation, blocking bool, uc store.UserContext) error {
	if _, stored, err := store.StoreAfterCheck(ctx, c.store, a, blocking, c.levels, uc); err != nil {
		c.logger.ErrorContext(ctx, "store activation failed", "activationId", a.ActivationID, "name", a.Name, "error", err)
		return fmt.Errorf("controller: store %s: %w", a.DocID(), err)
	} else if !stored {
		c.logger.InfoContext(ctx, "activation not stored by store level", "activationId", a.ActivationID)
	}
	return nil
}

// Activation serves GET /namespaces/{ns}/activations/{id}.
func (c *Controller) Activation(ctx context.Context, namespace, id string, uc store.UserContext) (*store.Activation, error) {
	return c.store.Get(ctx, namespace, id, uc)
}

// OpenWhisk's list limits (whisk.query-limit, applied by RestAPIs.scala).
const (
	// DefaultListLimit is the limit of a list request that names none.
	DefaultListLimit = 30
	// MaxListLimit is the largest limit, and the one that limit=0 asks for.
	MaxListLimit = 200
)

// Activations serves GET /namespaces/{ns}/activations once its parameters
// are read (ParseListRequest): newest first. q.Limit 0 stands for an absent
// limit parameter and lists DefaultListLimit records; a limit above
// MaxListLimit or a negative skip is a *BadRequestError, as OpenWhisk
// answers 400 to them. (The parameter limit=0 means MaxListLimit; the parser
// resolves it.)
func (c *Controller) Activations(ctx context.Context, q store.Query, uc store.UserContext) ([]*store.Activation, error) {
	switch {
	case q.Limit == 0:
		q.Limit = DefaultListLimit
	case q.Limit < 0 || q.Limit > MaxListLimit:
		return nil, limitError(strconv.Itoa(q.Limit))
	}
	if q.Skip < 0 {
		return nil, skipError(strconv.Itoa(q.Skip))
	}
	return c.store.List(ctx, q, uc)
}

// CountActivations serves GET /namespaces/{ns}/activations?count=true: the
// number of matching records minus q.Skip; a negative skip is a
// *BadRequestError.
func (c *Controller) CountActivations(ctx context.Context, q store.Query, uc store.UserContext) (int, error) {
	if q.Skip < 0 {
		return 0, skipError(strconv.Itoa(q.Skip))
	}
	return c.store.Count(ctx, q, uc)
}

// NewActivationID returns a random activation id: a UUID without dashes.
func NewActivationID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return hex.EncodeToString(b[:])
}

func subjectOf(uc store.UserContext, namespace string) string {
	if uc.Subject != "" {
		return uc.Subject
	}
	return namespace + "-subject"
}

func jsonString(s string) json.RawMessage { b, _ := json.Marshal(s); return b }

func jsonBool(v bool) json.RawMessage {
	if v {
		return json.RawMessage(`true`)
	}
	return json.RawMessage(`false`)
}
