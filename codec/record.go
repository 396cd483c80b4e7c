package codec

import (
	"errors"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-whisk/activationstore/store"
)

// field numbers every member name this package knows, in any record kind.
type field uint8

const (
	fNamespace field = iota
	fName
	fSubject
	fActivationID
	fStart
	fEnd
	fCause
	fResponse
	fLogs
	fVersion
	fPublish
	fAnnotations
	fDuration
	fStatusCode // ActivationResponse, and the view summary
	fResult
	fSize
	fSuccess // extended ActivationResponse
	fStatus
	fTransid // acknowledgements
	fIsSystemError
	fInstance
	fInvoker
	fDocID // CouchDB document
	fRev
	fEntityType
	fUpdated
	nFields
)

var fieldNames = [nFields]string{
	"namespace", "name", "subject", "activationId", "start", "end", "cause",
	"response", "logs", "version", "publish", "annotations", "duration",
	"statusCode", "result", "size", "success", "status",
	"transid", "isSystemError", "instance", "invoker",
	"_id", "_rev", "entityType", "updated",
}

func lookupField(key []byte) (field, bool) {
	switch string(key) { // no allocation: the compiler compares in place
	case "namespace":
		return fNamespace, true
	case "name":
		return fName, true
	case "subject":
		return fSubject, true
	case "activationId":
		return fActivationID, true
	case "start":
		return fStart, true
	case "end":
		return fEnd, true
	case "cause":
		return fCause, true
	case "response":
		return fResponse, true
	case "logs":
		return fLogs, true
	case "version":
		return fVersion, true
	case "publish":
		return fPublish, true
	case "annotations":
		return fAnnotations, true
	case "duration":
		return fDuration, true
	case "statusCode":
		return fStatusCode, true
	case "result":
		return fResult, true
	case "size":
		return fSize, true
	case "success":
		return fSuccess, true
	case "status":
		return fStatus, true
	case "transid":
		return fTransid, true
	case "isSystemError":
		return fIsSystemError, true
	case "instance":
		return fInstance, true
	case "invoker":
		return fInvoker, true
	case "_id":
		return fDocID, true
	case "_rev":
		return fRev, true
	case "entityType":
		return fEntityType, true
	case "updated":
		return fUpdated, true
	}
	return 0, false
}

// nullable members read null as "absent" (spray-json Options). A null
// instance is read as absent too, rather than failing the record.
const nullable = 1<<fCause | 1<<fDuration | 1<<fResult | 1<<fSize | 1<<fIsSystemError |
	1<<fRev | 1<<fInstance | 1<<fInvoker | 1<<fStatus | 1<<fSuccess | 1<<fUpdated | 1<<fEntityType | 1<<fDocID

// maxRecordLevel: records nest as ack → activation → response. A deeper
// "response" member means nothing to any reader and is skipped.
const maxRecordLevel = 2

// record holds every known member of one JSON object, decoded in a single
// pass. Which members matter, and which are required, depends on what the
// caller reads the object as (activation, document, ack, summary…), so
// problems are kept per member and reported only if that member matters.
// Like spray-json, a repeated member overrides the earlier one.
type record struct {
	seen uint32
	errs [nFields]*Error

	namespace, name, subject, activationID, cause, version string
	start, end, updated                                    time.Time
	logs                                                   []string
	publish                                                bool
	annotations                                            []store.Annotation
	duration                                               int64

	statusCode int
	result     []byte
	size       int64
	success    bool
	status     string

	respID string  // response given as an activation id string
	resp   *record // response given as an object

	tid           TransactionID
	isSystemError bool
	instance      InstanceID
	invoker       InstanceID

	docID, rev, entityType string
}

func (r *record) has(f field) bool { return r.seen&(1<<f) != 0 }

// recordPool recycles records: one is 1 KB, and the persister reads two
// per Kafka record (the ack and its activation), which made them half of
// what Decode allocated.
var recordPool = sync.Pool{New: func() any { return new(record) }}

// release returns r and its response record to the pool; nil is a no-op.
// Nothing may use r afterwards. What r's fields refer to (strings, logs,
// annotations, results) is not recycled, so values built from r stay
// valid.
func (r *record) release() {
	if r == nil {
		return
	}
	r.resp.release()
	*r = record{}
	recordPool.Put(r)
}

// record decodes one object. The caller releases the record.
func (d *decoder) record(level int) (rec *record, err error) {
	if err := d.objectStart(); err != nil {
		return nil, err
	}
	r := recordPool.Get().(*record)
	defer func() {
		if err != nil {
			r.release()
		}
	}()
	for first := true; ; first = false {
		key, ok, err := d.nextMember(first)
		if err != nil {
			return nil, err
		}
		if !ok {
			return r, nil
		}
		d.push(key)
		if f, known := lookupField(key); known {
			err = d.member(r, f, level)
		} else {
			err = d.skip()
		}
		if err != nil {
			return nil, err
		}
		d.pop()
	}
}

// member decodes the value of member f into r. Syntax errors are returned;
// a well-formed value of the wrong shape is recorded in r.errs[f].
func (d *decoder) member(r *record, f field, level int) error {
	bit := uint32(1) << f
	r.errs[f] = nil
	if nullable&bit != 0 && d.peek() == 'n' {
		r.seen &^= bit
		return d.literal("null")
	}
	r.seen |= bit
	soft := func(e *Error) error {
		r.errs[f] = e
		return d.skip()
	}
	switch f {
	case fNamespace, fName, fSubject, fVersion, fStatus, fDocID, fRev, fEntityType:
		if d.peek() != '"' {
			return soft(d.typeErr("a string"))
		}
		s, err := d.readString()
		if err != nil {
			return err
		}
		switch f {
		case fNamespace:
			ns, reason := entityPath(s)
			if reason != "" {
				r.errs[f] = d.errAt(reason)
			}
			r.namespace = ns
		case fName:
			if reason := entityName(s); reason != "" {
				r.errs[f] = d.errAt(strconv.Quote(s) + " " + reason)
			}
			r.name = s
		case fSubject:
			// Subject(s) is an ArgNormalizer: String.trim, then the length check
			if store.SubjectLength(s) < store.MinSubjectLength {
				r.errs[f] = d.errAt("subject " + strconv.Quote(s) + " is shorter than " + itoa(store.MinSubjectLength) + " characters once trimmed")
			}
			r.subject = store.TrimSubject(s)
		case fVersion:
			v, ok := semver(s)
			if !ok {
				r.errs[f] = d.errAt("semantic version " + strconv.Quote(s) + " is malformed (want major.minor.patch, not negative, not 0.0.0)")
			}
			r.version = v
		case fStatus:
			r.status = s
		case fDocID:
			r.docID = s
		case fRev:
			r.rev = s
		case fEntityType:
			r.entityType = s
		}
		return nil
	case fActivationID, fCause:
		id, e, err := d.activationID()
		if err != nil {
			return err
		}
		r.errs[f] = e
		if f == fCause {
			r.cause = id
		} else {
			r.activationID = id
		}
		return nil
	case fStart, fEnd, fUpdated:
		t, e, err := d.timestamp()
		if err != nil {
			return err
		}
		r.errs[f] = e
		switch f {
		case fStart:
			r.start = t
		case fEnd:
			r.end = t
		default:
			r.updated = t
		}
		return nil
	case fDuration, fSize, fStatusCode:
		if c := d.peek(); c != '-' && (c < '0' || c > '9') {
			return soft(d.typeErr("a number"))
		}
		lit, err := d.readNumber()
		if err != nil {
			return err
		}
		// size and statusCode are Scala Ints, duration a Long: read as
		// OpenWhisk reads them, wrapping (BigDecimal.intValue/longValue)
		bits := uint(32)
		if f == fDuration {
			bits = 64
		}
		v := wrapInt(lit, bits)
		switch f {
		case fDuration:
			r.duration = v
		case fSize:
			r.size = v
		default:
			r.statusCode = int(v)
		}
		return nil
	case fPublish, fSuccess, fIsSystemError:
		if c := d.peek(); c != 't' && c != 'f' {
			return soft(d.typeErr("a boolean"))
		}
		b, err := d.readBool()
		switch f {
		case fPublish:
			r.publish = b
		case fSuccess:
			r.success = b
		default:
			r.isSystemError = b
		}
		return err
	case fResult:
		v, err := d.raw()
		r.result = v
		return err
	case fLogs:
		return d.logs(r)
	case fAnnotations:
		return d.annotations(r)
	case fResponse:
		switch d.peek() {
		case '"':
			r.resp.release() // a repeated member overrides the earlier one
			r.resp = nil
			id, e, err := d.activationID()
			r.respID, r.errs[f] = id, e
			return err
		case '{':
			if level >= maxRecordLevel {
				r.seen &^= bit
				return d.skip()
			}
			r.respID = ""
			resp, err := d.record(level + 1)
			r.resp.release()
			r.resp = resp
			return err
		}
		return soft(d.typeErr("a JSON object or activation id string"))
	case fTransid:
		t, err := d.transactionID()
		r.tid = t
		return err
	case fInstance, fInvoker:
		in, err := d.instanceID()
		if f == fInstance {
			r.instance = in
		} else {
			r.invoker = in
		}
		return err
	}
	return d.skip()
}

func (d *decoder) logs(r *record) error {
	const f = fLogs
	if d.peek() != '[' {
		r.errs[f] = d.typeErr("a JSON array of strings")
		return d.skip()
	}
	if err := d.arrayStart(); err != nil {
		return err
	}
	logs := make([]string, 0, 4)
	d.pushIndex(0)
	for i := 0; ; i++ {
		ok, err := d.nextElement(i == 0)
		if err != nil {
			return err
		}
		if !ok {
			break
		}
		d.setIndex(i)
		if d.peek() != '"' {
			if r.errs[f] == nil {
				r.errs[f] = d.typeErr("a string")
			}
			if err := d.skip(); err != nil {
				return err
			}
			continue
		}
		s, err := d.readString()
		if err != nil {
			return err
		}
		logs = append(logs, s)
	}
	d.pop()
	r.logs = logs
	return nil
}

// annotations reads OpenWhisk Parameters: [{"key": k, "value": v, "init"?: b, "encryption"?: s}].
func (d *decoder) annotations(r *record) error {
	const f = fAnnotations
	if d.peek() != '[' {
		r.errs[f] = d.typeErr("a JSON array of {\"key\", \"value\"} objects")
		return d.skip()
	}
	if err := d.arrayStart(); err != nil {
		return err
	}
	var anns []store.Annotation
	d.pushIndex(0)
	for i := 0; ; i++ {
		ok, err := d.nextElement(i == 0)
		if err != nil {
			return err
		}
		if !ok {
			break
		}
		d.setIndex(i)
		if d.peek() != '{' {
			if r.errs[f] == nil {
				r.errs[f] = d.typeErr("a JSON object with key and value")
			}
			if err := d.skip(); err != nil {
				return err
			}
			continue
		}
		a, e, err := d.annotation()
		if err != nil {
			return err
		}
		if e != nil && r.errs[f] == nil {
			r.errs[f] = e
		}
		if anns == nil {
			anns = make([]store.Annotation, 0, 8)
		}
		anns = append(anns, a)
	}
	d.pop()
	if anns == nil {
		anns = []store.Annotation{}
	}
	r.annotations = anns
	return nil
}

func (d *decoder) annotation() (a store.Annotation, soft *Error, err error) {
	if err := d.objectStart(); err != nil {
		return a, nil, err
	}
	var hasKey, hasValue bool
	for first := true; ; first = false {
		key, ok, err := d.nextMember(first)
		if err != nil {
			return a, nil, err
		}
		if !ok {
			break
		}
		d.push(key)
		switch string(key) {
		case "key":
			if d.peek() != '"' {
				if soft == nil {
					soft = d.typeErr("a string")
				}
				err = d.skip()
				break
			}
			var kb []byte
			if kb, err = d.readKey(); err == nil {
				a.Key, hasKey = internKey(kb), true
			}
		case "value":
			a.Value, err = d.raw()
			hasValue = true
		case "init":
			switch d.peek() {
			case 't', 'f':
				a.Init, err = d.readBool()
			case 'n':
				a.Init, err = false, d.literal("null")
			default:
				if soft == nil {
					soft = d.typeErr("a boolean")
				}
				err = d.skip()
			}
		case "encryption":
			switch d.peek() {
			case '"':
				a.Encryption, err = d.readString()
			case 'n':
				a.Encryption, err = "", d.literal("null")
			default:
				if soft == nil {
					soft = d.typeErr("a string")
				}
				err = d.skip()
			}
		default:
			err = d.skip()
		}
		if err != nil {
			return a, nil, err
		}
		d.pop()
	}
	if soft == nil && !hasKey {
		soft = &Error{Field: join(d.pathString(), "key"), Reason: "missing required member", Offset: int64(d.pos)}
	}
	if soft == nil && !hasValue {
		soft = &Error{Field: join(d.pathString(), "value"), Reason: "missing required member", Offset: int64(d.pos)}
	}
	return a, soft, nil
}

// internKey returns the well-known annotation keys without allocating.
func internKey(b []byte) string {
	switch string(b) {
	case "path":
		return "path"
	case "kind":
		return "kind"
	case "limits":
		return "limits"
	case "timeout":
		return "timeout"
	case "initTime":
		return "initTime"
	case "waitTime":
		return "waitTime"
	case "causedBy":
		return "causedBy"
	case "topmost":
		return "topmost"
	case "conductor":
		return "conductor"
	case "binding":
		return "binding"
	}
	return string(b)
}

// activationID reads an ActivationId: a string, or a JSON number whose
// digits form the id (OpenWhisk reads a number through its toString).
func (d *decoder) activationID() (id string, soft *Error, err error) {
	switch c := d.peek(); {
	case c == '"':
		s, err := d.readString()
		if err != nil {
			return "", nil, err
		}
		if reason := activationIDReason(s); reason != "" {
			return s, d.errAt(reason), nil
		}
		return s, nil, nil
	case c == '-' || c >= '0' && c <= '9':
		lit, err := d.readNumber()
		if err != nil {
			return "", nil, err
		}
		s := string(lit)
		if strings.ContainsAny(s, "-.eE") {
			return s, d.errAt("activation id number " + s + " is not 32 digits"), nil
		}
		if reason := activationIDReason(s); reason != "" {
			return s, d.errAt(reason), nil
		}
		return s, nil, nil
	}
	e := d.typeErr("an activation id string")
	return "", e, d.skip()
}

func activationIDReason(s string) string {
	if len(s) != store.ActivationIDLength {
		return "activation id length is " + itoa(utf16Len(s)) + " but must be 32"
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return "activation id " + strconv.Quote(s) + " is not valid: want 32 lowercase hexadecimal characters"
		}
	}
	return ""
}

// timestamp reads an Instant: epoch milliseconds (a fraction truncates) or
// an ISO-8601 string.
func (d *decoder) timestamp() (t time.Time, soft *Error, err error) {
	switch c := d.peek(); {
	case c == '"':
		s, err := d.readString()
		if err != nil {
			return t, nil, err
		}
		p, perr := time.Parse(time.RFC3339Nano, s)
		if perr != nil {
			return t, d.errAt("timestamp " + strconv.Quote(s) + " is malformed: want epoch milliseconds or an ISO-8601 instant such as 2019-11-19T12:26:26Z"), nil
		}
		return msToTime(p.UnixMilli()), nil, nil
	case c == '-' || c >= '0' && c <= '9':
		lit, err := d.readNumber()
		if err != nil {
			return t, nil, err
		}
		// Instant.ofEpochMilli(bigDecimal.longValue): wraps beyond a Long
		return msToTime(wrapInt(lit, 64)), nil, nil
	}
	e := d.typeErr("epoch milliseconds (number) or an ISO-8601 string")
	return t, e, d.skip()
}

// msToTime maps every epoch millisecond value to itself: 0 is epoch 0
// (store.NoEnd, OpenWhisk's "no end"), and -62135596800000 the zero
// time.Time.
func msToTime(ms int64) time.Time { return time.UnixMilli(ms).UTC() }

// timeToMs is t in epoch milliseconds: the zero time.Time is
// -62135596800000, never 0, so that presence is never inferred from it.
func timeToMs(t time.Time) int64 { return t.UnixMilli() }

// entityPath applies OpenWhisk's EntityPath reader: split on "/", drop empty
// segments, at least one segment, each an EntityName. It returns the path
// as OpenWhisk writes it back (segments joined by "/").
func entityPath(s string) (string, string) {
	clean := true
	n := 0
	for seg := range strings.SplitSeq(s, "/") {
		if seg == "" {
			clean = false
			continue
		}
		n++
		if reason := entityName(seg); reason != "" {
			return s, "segment " + strconv.Quote(seg) + " of " + strconv.Quote(s) + " " + reason
		}
	}
	if n == 0 {
		return s, "namespace " + strconv.Quote(s) + " is empty"
	}
	if clean {
		return s, ""
	}
	parts := strings.FieldsFunc(s, func(r rune) bool { return r == '/' })
	return strings.Join(parts, "/"), ""
}

// entityName applies OpenWhisk's EntityName rule, as the store package
// does (store.ValidateEntityName): a leading underscore is valid, so the
// codec reads what OpenWhisk reads, and the stores refuse only a namespace
// that CouchDB cannot take as a document id.
func entityName(s string) string {
	var ie *store.InvalidError
	if errors.As(store.ValidateEntityName(s), &ie) {
		return ie.Reason
	}
	return ""
}

// utf16Len is the length Java reports for s.
func utf16Len(s string) int {
	n := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c < 0x80 || c >= 0xC0 && c < 0xF0:
			n++ // ASCII or the lead byte of a BMP rune
		case c >= 0xF0:
			n += 2 // a rune outside the BMP is a surrogate pair
		}
	}
	return n
}

// semver applies OpenWhisk's SemVer reader: split on ".", missing parts are
// 0, parts after the third are ignored, each part an Int (leading zeros and
// a "+" sign allowed), none negative, not 0.0.0. It returns the version as
// OpenWhisk writes it back.
func semver(s string) (string, bool) {
	if s == store.DefaultVersion {
		return s, true
	}
	parts := strings.Split(s, ".")
	for len(parts) > 0 && parts[len(parts)-1] == "" { // Java's split drops trailing empty strings
		parts = parts[:len(parts)-1]
	}
	var v [3]int64
	for i := 0; i < 3 && i < len(parts); i++ {
		p := parts[i]
		n, err := strconv.ParseInt(p, 10, 32)
		if err != nil || n < 0 {
			return s, false
		}
		v[i] = n
	}
	if v == [3]int64{} {
		return s, false
	}
	out := strconv.FormatInt(v[0], 10) + "." + strconv.FormatInt(v[1], 10) + "." + strconv.FormatInt(v[2], 10)
	if out == s {
		return s, true
	}
	return out, true
}
