package codec

import (
	"fmt"
	"slices"

	"github.com/go-whisk/activationstore/store"
)

// Message is a record found on the activation topics: one of
// *ResultMessage, *CompletionMessage, *CombinedMessage or *ActivationRecord.
type Message interface {
	// Activation returns the activation the record carries, or nil when it
	// carries none (completion messages, and results shrunk to an id).
	Activation() *store.Activation
}

// Instance member names of completion and combined messages (see Era).
const (
	InstanceKey        = "instance" // EraMaster: OpenWhisk 1.0.0 and later
	InstanceKeyInvoker = "invoker"  // EraPR: PR #4632 era and before
)

// ResultMessage is OpenWhisk's ResultMessage: {"transid", "response"}. The
// response is either the activation or, when the activation was too big for
// the bus ("shrunk"), only its id.
type ResultMessage struct {
	TransID      TransactionID
	Response     *store.Activation // nil when shrunk
	ActivationID string            // the id when shrunk; "" when Response is set
	// Era picks the controllers that read the message: at EraPR the
	// transid is written without its parent, which PR-era controllers
	// cannot read (they would take the whole transid as "sid_unknown").
	// Decode leaves it EraMaster, which writes the transid as read.
	Era Era
}

// Activation returns the activation, or nil when the message was shrunk.
func (m *ResultMessage) Activation() *store.Activation { return m.Response }

// CompletionMessage is OpenWhisk's CompletionMessage: an invoker freed the
// slot of an activation. It carries no activation.
type CompletionMessage struct {
	TransID       TransactionID
	ActivationID  string
	IsSystemError *bool // nil when absent
	Instance      InstanceID
	// Era picks the controllers that can read the message when it is
	// written: the instance goes under "instance" as a complete current
	// InvokerInstanceId (EraMaster, the zero value), or under "invoker" as
	// a v1 id (EraPR). Decode sets it from the member it read.
	Era Era
}

// Activation returns nil: a completion carries no activation.
func (m *CompletionMessage) Activation() *store.Activation { return nil }

// CombinedMessage is OpenWhisk's CombinedCompletionAndResultMessage: the
// result of a blocking activation and the release of its slot in one.
type CombinedMessage struct {
	TransID       TransactionID
	Response      *store.Activation // nil when shrunk
	ActivationID  string            // the id when shrunk; "" when Response is set
	IsSystemError *bool             // nil when absent
	Instance      InstanceID
	Era           Era // as in CompletionMessage
}

// Activation returns the activation, or nil when the message was shrunk.
func (m *CombinedMessage) Activation() *store.Activation { return m.Response }

// ActivationRecord is a plain WhiskActivation, as published on the
// "activations" topic when logs are stored with the activation.
type ActivationRecord struct {
	Record *store.Activation
}

// Activation returns the record.
func (m *ActivationRecord) Activation() *store.Activation { return m.Record }

// Decode recognises any record found on the activation topics and reads it
// in one pass. A JSON object with a "transid" member is an acknowledgement,
// dispatched as OpenWhisk does: an instance ("instance", or the PR-era
// "invoker") and a "response" make a combined message, an instance alone a
// completion, anything else a result. An object without "transid" but with
// "activationId" is a plain activation. Every failure matches ErrMalformed.
func Decode(b []byte) (Message, error) {
	r, err := readRecord(b, "an acknowledgement or an activation")
	if err != nil {
		return nil, err
	}
	defer r.release()
	if !r.has(fTransid) {
		if !r.has(fActivationID) {
			return nil, &Error{Reason: `want an acknowledgement (with member "transid") or an activation (with member "activationId"), found neither`, Offset: -1}
		}
		a, err := r.activation("", formSerdes, activationRequired, activationOptional)
		if err != nil {
			return nil, err
		}
		return &ActivationRecord{Record: a}, nil
	}
	inst, era, completion := r.instance, EraMaster, r.has(fInstance)
	if !completion && r.has(fInvoker) {
		inst, era, completion = r.invoker, EraPR, true
	}
	var sysErr *bool
	if completion {
		if err := r.check("", 0, 1<<fIsSystemError); err != nil {
			return nil, err
		}
		if r.has(fIsSystemError) {
			v := r.isSystemError
			sysErr = &v
		}
	}
	if completion && !r.has(fResponse) {
		if err := r.check("", 1<<fActivationID, 0); err != nil {
			return nil, err
		}
		return &CompletionMessage{TransID: r.tid, ActivationID: r.activationID, IsSystemError: sysErr, Instance: inst, Era: era}, nil
	}
	if err := r.check("", 1<<fResponse, 0); err != nil {
		return nil, err
	}
	var a *store.Activation
	if r.resp != nil {
		if a, err = r.resp.activation("response", formSerdes, activationRequired, activationOptional); err != nil {
			return nil, err
		}
	}
	if completion {
		return &CombinedMessage{TransID: r.tid, Response: a, ActivationID: r.respID, IsSystemError: sysErr, Instance: inst, Era: era}, nil
	}
	return &ResultMessage{TransID: r.tid, Response: a, ActivationID: r.respID}, nil
}

// MarshalResultMessage writes {"transid":[…],"response":{<activation>}}:
// what kafkastore publishes, readable by Decode and by OpenWhisk.
func MarshalResultMessage(tid TransactionID, a *store.Activation) ([]byte, error) {
	if a == nil {
		return nil, invalidInput("response", "is nil")
	}
	return Marshal(&ResultMessage{TransID: tid, Response: a})
}

// Marshal writes any message Decode returns, in the same form.
func Marshal(m Message) ([]byte, error) {
	var (
		dst []byte
		err error
	)
	switch m := m.(type) {
	case *ActivationRecord:
		return MarshalActivation(m.Record)
	case *ResultMessage:
		if m.Era != EraMaster && m.Era != EraPR {
			return nil, invalidInput("era", "is "+m.Era.String()+": want EraMaster or EraPR")
		}
		dst, err = appendAckHead(dst, &m.TransID, m.Response, m.ActivationID, m.Era)
	case *CombinedMessage:
		if dst, err = appendAckHead(dst, &m.TransID, m.Response, m.ActivationID, m.Era); err == nil {
			dst, err = appendAckTail(dst, m.IsSystemError, &m.Instance, m.Era)
		}
	case *CompletionMessage:
		if m.ActivationID == "" {
			return nil, invalidInput("activationId", "is empty")
		}
		dst = append(slices.Grow(dst, 256), `{"transid":`...)
		if dst, err = appendTID(dst, &m.TransID, 0, m.Era); err == nil {
			dst = append(dst, `,"activationId":`...)
			dst = appendString(dst, m.ActivationID)
			dst, err = appendAckTail(dst, m.IsSystemError, &m.Instance, m.Era)
		}
	case nil:
		return nil, invalidInput("message", "is nil")
	default:
		return nil, invalidInput("message", fmt.Sprintf("has unknown type %T", m))
	}
	if err != nil {
		return nil, err
	}
	return append(dst, '}'), nil
}

// appendAckHead appends {"transid":…,"response":… to dst, growing it once
// for the whole message.
func appendAckHead(dst []byte, tid *TransactionID, a *store.Activation, id string, era Era) ([]byte, error) {
	n := 256
	if a != nil {
		n += sizeHint(a)
	}
	dst = append(slices.Grow(dst, n), `{"transid":`...)
	dst, err := appendTID(dst, tid, 0, era)
	if err != nil {
		return nil, err
	}
	dst = append(dst, `,"response":`...)
	switch {
	case a != nil:
		dst = append(dst, '{')
		if dst, err = appendActivation(dst, a, formSerdes, "response"); err != nil {
			return nil, err
		}
		dst = append(dst, '}')
	case id != "":
		dst = appendString(dst, id)
	default:
		return nil, invalidInput("response", "has neither an activation nor an activation id")
	}
	return dst, nil
}

func appendAckTail(dst []byte, sysErr *bool, in *InstanceID, era Era) ([]byte, error) {
	if era != EraMaster && era != EraPR {
		return nil, invalidInput("era", "is "+era.String()+": want EraMaster or EraPR")
	}
	if sysErr != nil {
		dst = append(dst, `,"isSystemError":`...)
		if *sysErr {
			dst = append(dst, "true"...)
		} else {
			dst = append(dst, "false"...)
		}
	}
	dst = append(dst, ',')
	dst = appendString(dst, era.InstanceKey())
	dst = append(dst, ':')
	return appendInstance(dst, in, era)
}

// NewCombinedMessage builds the ack an invoker sends for a blocking
// activation, as OpenWhisk's constructor does: IsSystemError is whether the
// activation ended in a whisk error. The message is for EraMaster
// controllers; set Era to EraPR for controllers of the PR era. in is the
// sending invoker (its Type may be left empty); Marshal writes it complete.
func NewCombinedMessage(tid TransactionID, a *store.Activation, in InstanceID) *CombinedMessage {
	sys := a.Response.StatusCode == store.StatusWhiskError
	return &CombinedMessage{TransID: tid, Response: a, IsSystemError: &sys, Instance: in}
}

// NewCompletionMessage builds the ack that frees an activation's slot, for
// EraMaster controllers unless Era is set; see NewCombinedMessage.
func NewCompletionMessage(tid TransactionID, a *store.Activation, in InstanceID) *CompletionMessage {
	sys := a.Response.StatusCode == store.StatusWhiskError
	return &CompletionMessage{TransID: tid, ActivationID: a.ActivationID, IsSystemError: &sys, Instance: in}
}

// Shrink returns the message with the activation replaced by its id, as
// OpenWhisk sends it when the record is too big for the bus.
func (m *ResultMessage) Shrink() *ResultMessage {
	c := *m
	if c.Response != nil {
		c.ActivationID, c.Response = c.Response.ActivationID, nil
	}
	return &c
}

// Shrink returns the message with the activation replaced by its id;
// IsSystemError is kept.
func (m *CombinedMessage) Shrink() *CombinedMessage {
	c := *m
	if c.Response != nil {
		c.ActivationID, c.Response = c.Response.ActivationID, nil
	}
	return &c
}
