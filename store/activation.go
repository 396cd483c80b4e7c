package store

import (
	"encoding/json"
	"time"
)

// Status codes of an activation response, as OpenWhisk's ActivationResponse.
const (
	StatusSuccess          = 0 // the action ran and returned a result
	StatusApplicationError = 1 // the action ran and returned an error
	StatusDeveloperError   = 2 // init or run failed (bad response, timeout, memory)
	StatusWhiskError       = 3 // the platform failed
)

// DefaultVersion is the semantic version OpenWhisk gives an entity that names none.
const DefaultVersion = "0.0.1"

// NoEnd is the End of an activation that has none (a trigger's): epoch 0,
// OpenWhisk's Instant.EPOCH. Build trigger activations with End: NoEnd.
var NoEnd = time.UnixMilli(0).UTC()

// Activation is one WhiskActivation record: every member of OpenWhisk's
// WhiskActivation.serdes. Timestamps carry millisecond precision and are
// written as epoch milliseconds, every one as itself: the zero time.Time is
// 0001-01-01T00:00:00Z (-62135596800000), not epoch 0. Only an End at epoch
// 0 (NoEnd) means "no end", as in OpenWhisk.
type Activation struct {
	Namespace    string // EntityPath, e.g. "guest" or "guest/pkg"
	Name         string // action, trigger, sequence or conductor name
	Subject      string
	ActivationID string // 32 lowercase hexadecimal characters
	Start        time.Time
	End          time.Time // NoEnd (epoch 0): no end (trigger activations)
	Cause        string    // activation id of the parent sequence or conductor; "" if none
	Response     Response
	Logs         []string
	Version      string
	Publish      bool
	Annotations  []Annotation // in order
	Duration     *int64       // milliseconds; nil when absent (triggers)
}

// Response is OpenWhisk's ActivationResponse.
type Response struct {
	StatusCode int
	// Result is the raw JSON result, byte for byte; nil when absent.
	Result json.RawMessage
	// Size is the length of the container's raw response; nil when absent.
	Size *int64
}

// Success reports whether the activation ran and returned a result.
func (r Response) Success() bool { return r.StatusCode == StatusSuccess }

// Annotation is one member of an activation's annotations (OpenWhisk Parameters).
type Annotation struct {
	Key   string
	Value json.RawMessage // raw JSON; "null" is a valid value
	Init  bool            // written only when true
	// Encryption names the scheme of an encrypted value; "" when absent.
	Encryption string
}

// Annotation returns the raw value of the annotation named key, and whether
// it is present. When a key repeats, the last one wins, as in OpenWhisk.
func (a *Activation) Annotation(key string) (json.RawMessage, bool) {
	for i := len(a.Annotations) - 1; i >= 0; i-- {
		if a.Annotations[i].Key == key {
			return a.Annotations[i].Value, true
		}
	}
	return nil, false
}

// HasEnd reports whether the activation has ended: whether End is not
// epoch 0 (NoEnd), OpenWhisk's "end != Instant.EPOCH". Triggers have no end.
// The zero time.Time is an end like any other (year 1).
func (a *Activation) HasEnd() bool { return a.End.UnixMilli() != 0 }

// DurationMillis is the duration OpenWhisk reports: Duration when set, else
// End-Start when the activation has ended, else 0.
func (a *Activation) DurationMillis() int64 {
	if a.Duration != nil {
		return *a.Duration
	}
	if a.HasEnd() {
		return a.End.UnixMilli() - a.Start.UnixMilli()
	}
	return 0
}

// DocID is the document id OpenWhisk gives the activation: "<namespace>/<activationId>".
func (a *Activation) DocID() string { return DocID(a.Namespace, a.ActivationID) }

// DocID is the document id of an activation in a namespace.
func DocID(namespace, activationID string) string { return namespace + "/" + activationID }

// Clone returns a deep copy, so that a store never shares memory with its caller.
func (a *Activation) Clone() *Activation {
	if a == nil {
		return nil
	}
	c := *a
	c.Response.Result = cloneBytes(a.Response.Result)
	if a.Response.Size != nil {
		s := *a.Response.Size
		c.Response.Size = &s
	}
	if a.Logs != nil {
		c.Logs = append([]string(nil), a.Logs...)
	}
	if a.Annotations != nil {
		c.Annotations = make([]Annotation, len(a.Annotations))
		for i, an := range a.Annotations {
			an.Value = cloneBytes(an.Value)
			c.Annotations[i] = an
		}
	}
	if a.Duration != nil {
		d := *a.Duration
		c.Duration = &d
	}
	return &c
}

// Summary returns the copy a list without documents returns: the value of
// OpenWhisk's activations views (summaryAsJson), with neither subject, result
// nor logs. Like the views, it computes duration as End-Start and carries end,
// duration and status code only for activations that have ended.
func (a *Activation) Summary() *Activation {
	c := &Activation{
		Namespace:    a.Namespace,
		Name:         a.Name,
		ActivationID: a.ActivationID,
		Start:        a.Start,
		End:          NoEnd,
		Cause:        a.Cause,
		Version:      a.Version,
		Publish:      a.Publish,
		Annotations:  a.Clone().Annotations,
	}
	if a.HasEnd() {
		d := a.End.UnixMilli() - a.Start.UnixMilli()
		c.End = a.End
		c.Duration = &d
		c.Response.StatusCode = a.Response.StatusCode
	}
	return c
}

func cloneBytes(b []byte) []byte {
	if b == nil {
		return nil
	}
	return append([]byte(nil), b...)
}

// DocInfo identifies a stored document. Rev is empty when the store does not
// version documents, or when the record was published but not yet persisted.
type DocInfo struct {
	ID  string
	Rev string
}

// UserContext is who asks. OpenWhisk's CouchDB store ignores it; other stores
// may route on it. Its zero value is a valid context.
type UserContext struct {
	Subject   string
	Namespace string
	// StoreActivations is the user's storeActivations limit; nil means true.
	StoreActivations *bool
	// TransactionID is the request's transaction id; kafkastore puts it on the
	// wire. Empty means a system transaction.
	TransactionID string
	// ExtraLogging is the transaction id's extra-logging flag
	// (transid.meta.extraLogging in OpenWhisk, set by the request header
	// X-OW-EXTRA-LOGGING: on), which storeAfterCheck reads; it forces
	// storing. Fill it in from the same transaction id as TransactionID.
	ExtraLogging bool
}

// Query selects activations of one namespace, optionally of one action, newest first.
type Query struct {
	Namespace string
	// Name is an action path relative to the namespace ("action" or
	// "pkg/action"); empty for every activation of the namespace.
	Name string
	// Since and Upto bound Start, both inclusive. A zero Since is epoch 0,
	// where OpenWhisk's view queries start: records that start before 1970
	// are selected only by a Since that reaches them. A zero Upto is no
	// bound. Records with equal starts come in document id order.
	Since, Upto time.Time
	// Skip drops the newest Skip records; Limit keeps at most Limit (0: all).
	// Any non-negative values are valid: a store never sizes memory from
	// them, and a limit beyond the matching records means all of them.
	Skip, Limit int
	// IncludeDocs returns whole records; otherwise summaries without result and logs.
	IncludeDocs bool
}
