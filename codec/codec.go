package codec

import (
	"strconv"
	"time"

	"github.com/go-whisk/activationstore/store"
)

// Members of each form, as bit sets over field.
const (
	activationRequired = 1<<fNamespace | 1<<fName | 1<<fSubject | 1<<fActivationID | 1<<fStart | 1<<fEnd |
		1<<fResponse | 1<<fLogs | 1<<fVersion | 1<<fPublish | 1<<fAnnotations
	activationOptional = 1<<fCause | 1<<fDuration
	extendedRequired   = activationRequired &^ (1 << fEnd)
	extendedOptional   = activationOptional | 1<<fEnd
	summaryRequired    = 1<<fNamespace | 1<<fName | 1<<fActivationID | 1<<fStart
	summaryOptional    = 1<<fVersion | 1<<fPublish | 1<<fAnnotations | 1<<fEnd | 1<<fDuration | 1<<fStatusCode | 1<<fCause
	documentOptional   = activationOptional | 1<<fDocID | 1<<fRev | 1<<fEntityType | 1<<fUpdated
	responseRequired   = 1 << fStatusCode
	responseOptional   = 1<<fResult | 1<<fSize
	extRespRequired    = 1 << fStatus
	extRespOptional    = 1<<fResult | 1<<fSize | 1<<fSuccess
)

// check reports the first problem among the members that matter, in
// declaration order (the order spray-json reads them in).
func (r *record) check(prefix string, required, optional uint32) error {
	for f := field(0); f < nFields; f++ {
		bit := uint32(1) << f
		switch {
		case required&bit != 0:
			if e := r.errs[f]; e != nil {
				return e
			}
			if !r.has(f) {
				return missing(prefix, fieldNames[f])
			}
		case optional&bit != 0:
			if e := r.errs[f]; e != nil {
				return e
			}
		}
	}
	return nil
}

// activationBox allocates an activation and its optional numbers at once.
type activationBox struct {
	a              store.Activation
	duration, size int64
}

// activation builds the activation r holds, read as form f.
func (r *record) activation(prefix string, f form, required, optional uint32) (*store.Activation, error) {
	if err := r.check(prefix, required, optional); err != nil {
		return nil, err
	}
	box := &activationBox{}
	a := &box.a
	a.Namespace, a.Name, a.Subject, a.ActivationID = r.namespace, r.name, r.subject, r.activationID
	a.Start = r.start
	a.End = store.NoEnd // the extended and summary forms leave out "no end"
	if r.has(fEnd) {
		a.End = r.end
	}
	if r.has(fCause) {
		a.Cause = r.cause
	}
	a.Logs = r.logs
	a.Version = r.version
	if !r.has(fVersion) {
		a.Version = store.DefaultVersion
	}
	a.Publish = r.publish
	a.Annotations = r.annotations
	if r.has(fDuration) {
		box.duration = r.duration
		a.Duration = &box.duration
	}
	if f == formSummary {
		if r.has(fStatusCode) {
			a.Response.StatusCode = r.statusCode
		}
		return a, nil
	}
	rp := join(prefix, "response")
	resp := r.resp
	if resp == nil {
		return nil, &Error{Field: rp, Reason: "want a JSON object (an ActivationResponse), got an activation id string", Offset: -1}
	}
	if f == formExtended {
		if err := resp.check(rp, extRespRequired, extRespOptional); err != nil {
			return nil, err
		}
		code := -1
		for c, m := range statusMessages {
			if m == resp.status {
				code = c
			}
		}
		if code < 0 {
			return nil, &Error{Field: join(rp, "status"), Reason: "unknown status " + strconv.Quote(resp.status) +
				` (want "success", "application error", "action developer error" or "whisk internal error")`, Offset: -1}
		}
		a.Response.StatusCode = code
	} else {
		if err := resp.check(rp, responseRequired, responseOptional); err != nil {
			return nil, err
		}
		a.Response.StatusCode = resp.statusCode
	}
	if resp.has(fResult) {
		a.Response.Result = resp.result
	}
	if resp.has(fSize) {
		box.size = resp.size
		a.Response.Size = &box.size
	}
	return a, nil
}

func readRecord(b []byte, what string) (*record, error) {
	d := decoder{data: b}
	d.path = d.pathBuf[:0]
	d.ws()
	if d.peek() != '{' {
		return nil, &Error{Reason: "want a JSON object (" + what + "), got " + kindName(d.peek()), Offset: int64(d.pos)}
	}
	r, err := d.record(0)
	if err != nil {
		return nil, err
	}
	if err := d.end(); err != nil {
		r.release()
		return nil, err
	}
	return r, nil
}

// UnmarshalActivation reads a WhiskActivation in its serdes form (what acks,
// topics and CouchDB documents carry), applying OpenWhisk's reader rules.
func UnmarshalActivation(b []byte) (*store.Activation, error) {
	r, err := readRecord(b, "an activation")
	if err != nil {
		return nil, err
	}
	defer r.release()
	return r.activation("", formSerdes, activationRequired, activationOptional)
}

// MarshalActivation writes the WhiskActivation.serdes form. It fails, with
// an error matching store.ErrInvalid, only when a raw value (result,
// annotation value) is not valid JSON: it does not validate the activation
// (see store.ValidateActivation). An empty Version is written as
// store.DefaultVersion.
func MarshalActivation(a *store.Activation) ([]byte, error) {
	if a == nil {
		return nil, invalidInput("activation", "is nil")
	}
	dst := make([]byte, 0, sizeHint(a))
	dst = append(dst, '{')
	dst, err := appendActivation(dst, a, formSerdes, "")
	if err != nil {
		return nil, err
	}
	return append(dst, '}'), nil
}

// MarshalExtended writes the form OpenWhisk's API replies with
// (toExtendedJson): the response has "success" and "status" instead of
// "statusCode", "end" is left out when the activation has no end, and
// "duration" is computed from end-start when not set.
func MarshalExtended(a *store.Activation) ([]byte, error) {
	if a == nil {
		return nil, invalidInput("activation", "is nil")
	}
	dst := make([]byte, 0, sizeHint(a))
	dst = append(dst, '{')
	dst, err := appendActivation(dst, a, formExtended, "")
	if err != nil {
		return nil, err
	}
	return append(dst, '}'), nil
}

// UnmarshalExtended reads the API form written by MarshalExtended (and by
// OpenWhisk's API). The status code is recovered from response.status.
func UnmarshalExtended(b []byte) (*store.Activation, error) {
	r, err := readRecord(b, "an activation")
	if err != nil {
		return nil, err
	}
	defer r.release()
	return r.activation("", formExtended, extendedRequired, extendedOptional)
}

// MarshalSummary writes the value of OpenWhisk's activations views
// (summaryAsJson): no subject, result or logs; end, duration and statusCode
// only when the activation has ended.
func MarshalSummary(a *store.Activation) ([]byte, error) {
	if a == nil {
		return nil, invalidInput("activation", "is nil")
	}
	dst := make([]byte, 0, sizeHint(a))
	dst = append(dst, '{')
	dst, err := appendActivation(dst, a, formSummary, "")
	if err != nil {
		return nil, err
	}
	return append(dst, '}'), nil
}

// UnmarshalSummary reads a view row value (summaryAsJson form). Subject,
// Logs and Response.Result are left empty; a missing version reads as
// store.DefaultVersion.
func UnmarshalSummary(b []byte) (*store.Activation, error) {
	r, err := readRecord(b, "an activation summary")
	if err != nil {
		return nil, err
	}
	defer r.release()
	return r.activation("", formSummary, summaryRequired, summaryOptional)
}

// UnmarshalResponse reads an ActivationResponse: {"statusCode", "result"?, "size"?}.
func UnmarshalResponse(b []byte) (*store.Response, error) {
	r, err := readRecord(b, "an activation response")
	if err != nil {
		return nil, err
	}
	defer r.release()
	if err := r.check("", responseRequired, responseOptional); err != nil {
		return nil, err
	}
	resp := &store.Response{StatusCode: r.statusCode}
	if r.has(fResult) {
		resp.Result = r.result
	}
	if r.has(fSize) {
		s := r.size
		resp.Size = &s
	}
	return resp, nil
}

// MarshalResponse writes an ActivationResponse.
func MarshalResponse(r *store.Response) ([]byte, error) {
	return appendResponse(make([]byte, 0, 64+len(r.Result)), r, "response")
}

// EntityType is the entityType member of an activation's CouchDB document.
const EntityType = "activation"

// Document is an activation as CouchDB stores it: the serdes form plus
// "_id" ("<namespace>/<activationId>"), "_rev", "entityType" and "updated".
type Document struct {
	ID         string
	Rev        string // "" before the first write
	EntityType string // "activation"; "" when the document has none (still accepted, as by OpenWhisk)
	Updated    time.Time
	Activation *store.Activation
}

// MarshalDocument writes the CouchDB document for a first write (no
// "_rev"), as WhiskActivation.toDocumentRecord does.
func MarshalDocument(a *store.Activation, updated time.Time) ([]byte, error) {
	if a == nil {
		return nil, invalidInput("activation", "is nil")
	}
	return (&Document{ID: a.DocID(), EntityType: EntityType, Updated: updated, Activation: a}).MarshalJSON()
}

// MarshalJSON writes the document; "_rev" only when Rev is set, and an
// empty EntityType as "activation".
func (doc *Document) MarshalJSON() ([]byte, error) {
	a := doc.Activation
	if a == nil {
		return nil, invalidInput("activation", "is nil")
	}
	dst := make([]byte, 0, sizeHint(a)+len(doc.ID)+len(doc.Rev)+64)
	dst = append(dst, `{"_id":`...)
	id := doc.ID
	if id == "" {
		id = a.DocID()
	}
	dst = appendString(dst, id)
	if doc.Rev != "" {
		dst = append(dst, `,"_rev":`...)
		dst = appendString(dst, doc.Rev)
	}
	dst = append(dst, `,"entityType":`...)
	if doc.EntityType == "" {
		dst = appendString(dst, EntityType)
	} else {
		dst = appendString(dst, doc.EntityType)
	}
	dst = append(dst, `,"updated":`...)
	dst = strconv.AppendInt(dst, timeToMs(doc.Updated), 10)
	dst = append(dst, ',')
	dst, err := appendActivation(dst, a, formSerdes, "")
	if err != nil {
		return nil, err
	}
	return append(dst, '}'), nil
}

// UnmarshalDocument reads an activation's CouchDB document. A document
// whose entityType is not "activation" is rejected, as by OpenWhisk's
// WhiskDocumentReader; one without entityType is accepted.
func UnmarshalDocument(b []byte) (*Document, error) {
	r, err := readRecord(b, "a CouchDB document")
	if err != nil {
		return nil, err
	}
	defer r.release()
	a, err := r.activation("", formSerdes, activationRequired, documentOptional)
	if err != nil {
		return nil, err
	}
	if r.has(fEntityType) && r.entityType != EntityType {
		return nil, &Error{Field: "entityType", Reason: "is " + strconv.Quote(r.entityType) + ", want \"activation\"", Offset: -1}
	}
	doc := &Document{Activation: a}
	if r.has(fDocID) {
		doc.ID = r.docID
	}
	if r.has(fRev) {
		doc.Rev = r.rev
	}
	if r.has(fEntityType) {
		doc.EntityType = r.entityType
	}
	if r.has(fUpdated) {
		doc.Updated = r.updated
	}
	return doc, nil
}
