package codec

import (
	"math"
	"strconv"
	"unicode/utf8"
	"unsafe"

	"github.com/go-whisk/activationstore/store"
)

// form selects which of OpenWhisk's JSON forms of a WhiskActivation to write.
type form uint8

const (
	formSerdes   form = iota // WhiskActivation.serdes: acks, topics, CouchDB documents
	formExtended             // toExtendedJson: API replies
	formSummary              // summaryAsJson / the activations views' values
	formSearch               // ElasticSearchActivationStore's document: serdes, but response and annotations as it writes them
)

var statusMessages = [...]string{
	store.StatusSuccess:          "success",
	store.StatusApplicationError: "application error",
	store.StatusDeveloperError:   "action developer error",
	store.StatusWhiskError:       "whisk internal error",
}

// sizeHint estimates the encoded size, so one allocation usually suffices.
func sizeHint(a *store.Activation) int {
	n := 320 + len(a.Namespace) + len(a.Name) + len(a.Subject) + len(a.Version) + len(a.Response.Result)
	for _, l := range a.Logs {
		n += len(l) + 3
	}
	for _, an := range a.Annotations {
		n += len(an.Key) + len(an.Value) + 24
	}
	return n + n/8 // room for escapes
}

func appendActivation(dst []byte, a *store.Activation, f form, field string) ([]byte, error) {
	var err error
	dst = append(dst, `"namespace":`...)
	dst = appendString(dst, a.Namespace)
	dst = append(dst, `,"name":`...)
	dst = appendString(dst, a.Name)
	if f != formSummary {
		// written as OpenWhisk's Subject reader keeps it: trimmed
		dst = append(dst, `,"subject":`...)
		dst = appendString(dst, store.TrimSubject(a.Subject))
	}
	dst = append(dst, `,"activationId":`...)
	dst = appendString(dst, a.ActivationID)
	dst = append(dst, `,"start":`...)
	dst = strconv.AppendInt(dst, timeToMs(a.Start), 10)
	if f == formSerdes || f == formSearch || a.HasEnd() {
		dst = append(dst, `,"end":`...)
		dst = strconv.AppendInt(dst, timeToMs(a.End), 10)
	}
	if a.Cause != "" {
		dst = append(dst, `,"cause":`...)
		dst = appendString(dst, a.Cause)
	}
	switch f {
	case formSerdes:
		dst = append(dst, `,"response":`...)
		if dst, err = appendResponse(dst, &a.Response, join(field, "response")); err != nil {
			return nil, err
		}
	case formSearch:
		dst = append(dst, `,"response":`...)
		if dst, err = appendSearchResponse(dst, &a.Response, join(field, "response")); err != nil {
			return nil, err
		}
	case formExtended:
		c := a.Response.StatusCode
		if c < 0 || c >= len(statusMessages) {
			return nil, invalidInput(join(field, "response.statusCode"), "is "+itoa(c)+": the extended form needs 0, 1, 2 or 3")
		}
		dst = append(dst, `,"response":{`...)
		if a.Response.Result != nil {
			dst = append(dst, `"result":`...)
			if dst, err = appendRaw(dst, a.Response.Result, join(field, "response.result")); err != nil {
				return nil, err
			}
			dst = append(dst, ',')
		}
		if a.Response.Size != nil {
			if err := checkInt(join(field, "response.size"), *a.Response.Size); err != nil {
				return nil, err
			}
			dst = append(dst, `"size":`...)
			dst = strconv.AppendInt(dst, *a.Response.Size, 10)
			dst = append(dst, ',')
		}
		dst = append(dst, `"success":`...)
		dst = strconv.AppendBool(dst, c == store.StatusSuccess)
		dst = append(dst, `,"status":"`...)
		dst = append(dst, statusMessages[c]...)
		dst = append(dst, `"}`...)
	}
	if f != formSummary {
		dst = append(dst, `,"logs":[`...)
		for i, l := range a.Logs {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = appendString(dst, l)
		}
		dst = append(dst, ']')
	}
	// as OpenWhisk writes it back: "1.02" is "1.2.0", "" the default
	dst = append(dst, `,"version":`...)
	dst = appendString(dst, store.NormalizeVersion(a.Version))
	dst = append(dst, `,"publish":`...)
	dst = strconv.AppendBool(dst, a.Publish)
	dst = append(dst, `,"annotations":`...)
	if f == formSearch {
		dst, err = appendSearchAnnotations(dst, a.Annotations, join(field, "annotations"))
	} else {
		dst, err = appendAnnotations(dst, a.Annotations, join(field, "annotations"))
	}
	if err != nil {
		return nil, err
	}
	switch {
	case f != formSerdes && f != formSearch && a.HasEnd():
		// toExtendedJson and summaryAsJson: duration.getOrElse(end - start)
		dst = append(dst, `,"duration":`...)
		dst = strconv.AppendInt(dst, a.DurationMillis(), 10)
	case f != formSummary && a.Duration != nil:
		dst = append(dst, `,"duration":`...)
		dst = strconv.AppendInt(dst, *a.Duration, 10)
	}
	if f == formSummary && a.HasEnd() {
		if err := checkInt(join(field, "response.statusCode"), int64(a.Response.StatusCode)); err != nil {
			return nil, err
		}
		dst = append(dst, `,"statusCode":`...)
		dst = strconv.AppendInt(dst, int64(a.Response.StatusCode), 10)
	}
	return dst, nil
}

// appendAnnotations writes the annotations array: every form's but the
// Elasticsearch document's, which holds it as a string when its object
// form loses something.
func appendAnnotations(dst []byte, as []store.Annotation, field string) ([]byte, error) {
	var err error
	dst = append(dst, '[')
	for i := range as {
		an := &as[i]
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, `{"key":`...)
		dst = appendString(dst, an.Key)
		dst = append(dst, `,"value":`...)
		if dst, err = appendValue(dst, an.Value, field+"["+itoa(i)+"].value"); err != nil {
			return nil, err
		}
		if an.Init {
			dst = append(dst, `,"init":true`...)
		}
		if an.Encryption != "" {
			dst = append(dst, `,"encryption":`...)
			dst = appendString(dst, an.Encryption)
		}
		dst = append(dst, '}')
	}
	return append(dst, ']'), nil
}

// appendValue is appendRaw, with an absent value written null.
func appendValue(dst, raw []byte, field string) ([]byte, error) {
	if len(raw) == 0 {
		return append(dst, "null"...), nil
	}
	return appendRaw(dst, raw, field)
}

func appendResponse(dst []byte, r *store.Response, field string) ([]byte, error) {
	var err error
	if err := checkInt(join(field, "statusCode"), int64(r.StatusCode)); err != nil {
		return nil, err
	}
	if r.Size != nil {
		if err := checkInt(join(field, "size"), *r.Size); err != nil {
			return nil, err
		}
	}
	dst = append(dst, `{"statusCode":`...)
	dst = strconv.AppendInt(dst, int64(r.StatusCode), 10)
	if r.Result != nil {
		dst = append(dst, `,"result":`...)
		if dst, err = appendRaw(dst, r.Result, join(field, "result")); err != nil {
			return nil, err
		}
	}
	if r.Size != nil {
		dst = append(dst, `,"size":`...)
		dst = strconv.AppendInt(dst, *r.Size, 10)
	}
	return append(dst, '}'), nil
}

// checkInt refuses a value that OpenWhisk reads as a Scala Int, which
// would wrap to another number.
func checkInt(field string, v int64) error {
	if v < math.MinInt32 || v > math.MaxInt32 {
		return &store.InvalidError{Field: field, Value: strconv.FormatInt(v, 10),
			Reason: "is outside -2147483648..2147483647: OpenWhisk reads it as a Scala Int, which would wrap to another number"}
	}
	return nil
}

// appendRaw appends a raw JSON value, checking it and compacting it. It
// refuses, with an error matching store.ErrInvalid, a value OpenWhisk's
// parser cannot read: a number store.NumberProblem names, or nesting deeper
// than store.MaxRawNesting.
func appendRaw(dst, raw []byte, field string) ([]byte, error) {
	d := decoder{data: raw, writing: true}
	d.ws()
	start := d.pos
	d.sawSpace, d.sawBadUTF8, d.sawFFFF = false, false, false
	if err := d.skip(); err != nil {
		if e := err.(*Error); e.writeProblem {
			return nil, invalidInput(field, e.Reason)
		}
		return nil, invalidInput(field, "is not valid JSON: "+err.(*Error).Reason)
	}
	end := d.pos
	inner := d.sawSpace || d.sawBadUTF8 || d.sawFFFF
	if err := d.end(); err != nil {
		return nil, invalidInput(field, "is not valid JSON: "+err.(*Error).Reason)
	}
	if !inner {
		return append(dst, raw[start:end]...), nil
	}
	return compact(dst, raw[start:end]), nil
}

const hexDigits = "0123456789abcdef"

// appendString appends s as a JSON string. Like spray-json's compactPrint
// it does not escape HTML characters; invalid UTF-8 becomes U+FFFD. U+FFFF
// is escaped: spray-json's parser takes it raw as the end of input.
func appendString(dst []byte, s string) []byte {
	// A read-only byte view of s, so the fast scan needs no copy.
	b := unsafe.Slice(unsafe.StringData(s), len(s))
	dst = append(dst, '"')
	for i := 0; i < len(b); {
		n := plainLen(b[i:])
		dst = append(dst, b[i:i+n]...)
		i += n
		if i >= len(b) {
			break
		}
		c := b[i]
		switch {
		case c == '"' || c == '\\':
			dst = append(dst, '\\', c)
			i++
		case c < 0x20:
			switch c {
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
		default:
			r, size := utf8.DecodeRune(b[i:])
			if r == utf8.RuneError && size == 1 {
				dst = append(dst, `\ufffd`...)
			} else if r == 0xFFFF {
				dst = append(dst, `\uffff`...)
			} else {
				dst = append(dst, b[i:i+size]...)
			}
			i += size
		}
	}
	return append(dst, '"')
}

// maxParents bounds a chain of parent transaction ids, so that a cycle
// built by mistake fails instead of looping.
const maxParents = 100

// appendTID writes a transaction id as controllers of era read it. Master's
// TransactionId reads [id, start(, true)?(, parent)?]; the PR era reads only
// [id, start(, true)?] and takes any other shape as "sid_unknown", so at
// EraPR the parent is left out.
func appendTID(dst []byte, t *TransactionID, depth int, era Era) ([]byte, error) {
	if depth > maxParents {
		return nil, invalidInput("transid", "has more than "+itoa(maxParents)+" nested parents (a cycle?)")
	}
	dst = append(dst, '[')
	dst = appendString(dst, t.ID)
	dst = append(dst, ',')
	dst = strconv.AppendInt(dst, timeToMs(t.Start), 10)
	if t.ExtraLogging {
		dst = append(dst, ",true"...)
	}
	if t.Parent != nil && era != EraPR {
		dst = append(dst, ',')
		var err error
		if dst, err = appendTID(dst, t.Parent, depth+1, era); err != nil {
			return nil, err
		}
	}
	return append(dst, ']'), nil
}

// appendInstance writes an instance id as the controllers of era read it.
// Raw, when set, is written as is. An invoker's id (IsInvoker) is written
// complete: at EraMaster as OpenWhisk's InvokerInstanceId.serdes writes it
// (instanceType "invoker", tags and dedicatedNamespaces as [] when nil), at
// EraPR as the v1 id. Other ids are written {"asString","instanceType"};
// PR-era controllers read no such id.
func appendInstance(dst []byte, in *InstanceID, era Era) ([]byte, error) {
	key := era.InstanceKey()
	if len(in.Raw) > 0 {
		return appendRaw(dst, in.Raw, key)
	}
	if !in.IsInvoker() {
		switch {
		case era == EraPR:
			return nil, invalidInput(key, "is not an invoker's id (instanceType "+strconv.Quote(in.Type)+
				", asString "+strconv.Quote(in.AsString)+"); PR-era controllers read only invoker ids")
		case in.Type == "":
			return nil, invalidInput(key+".instanceType", "is empty for an instance with asString "+strconv.Quote(in.AsString))
		}
		dst = append(dst, `{"asString":`...)
		dst = appendString(dst, in.AsString)
		dst = append(dst, `,"instanceType":`...)
		dst = appendString(dst, in.Type)
		return append(dst, '}'), nil
	}
	// Both eras' readers fail on a userMemory ByteSize cannot parse.
	if !byteSize.MatchString(in.UserMemory) {
		return nil, invalidInput(key+".userMemory", strconv.Quote(in.UserMemory)+` is not a byte size like "1024 MB"`)
	}
	// instance is a Scala Int: beyond it, OpenWhisk would read another invoker
	if err := checkInt(key+".instance", int64(in.Instance)); err != nil {
		return nil, err
	}
	dst = append(dst, `{"instance":`...)
	dst = strconv.AppendInt(dst, int64(in.Instance), 10)
	if era == EraPR {
		// jsonFormat(InvokerInstanceId.apply, "instance", "uniqueName", "displayedName", "userMemory")
		dst = appendOptional(dst, `,"uniqueName":`, in.UniqueName)
		dst = appendOptional(dst, `,"displayedName":`, in.DisplayedName)
		dst = append(dst, `,"userMemory":`...)
		dst = appendString(dst, in.UserMemory)
		return append(dst, '}'), nil
	}
	if in.BusyMemory != "" && !byteSize.MatchString(in.BusyMemory) {
		return nil, invalidInput(key+".busyMemory", strconv.Quote(in.BusyMemory)+` is not a byte size like "512 MB"`)
	}
	dst = append(dst, `,"userMemory":`...)
	dst = appendString(dst, in.UserMemory)
	dst = appendOptional(dst, `,"busyMemory":`, in.BusyMemory)
	dst = append(dst, `,"instanceType":"invoker","tags":`...)
	dst = appendStrings(dst, in.Tags)
	dst = append(dst, `,"dedicatedNamespaces":`...)
	dst = appendStrings(dst, in.DedicatedNamespaces)
	dst = appendOptional(dst, `,"uniqueName":`, in.UniqueName)
	dst = appendOptional(dst, `,"displayedName":`, in.DisplayedName)
	return append(dst, '}'), nil
}

// appendOptional writes member (`,"name":`) and s unless s is empty, as
// spray-json leaves out an Option that is None.
func appendOptional(dst []byte, member, s string) []byte {
	if s == "" {
		return dst
	}
	return appendString(append(dst, member...), s)
}

func appendStrings(dst []byte, list []string) []byte {
	dst = append(dst, '[')
	for i, s := range list {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = appendString(dst, s)
	}
	return append(dst, ']')
}
