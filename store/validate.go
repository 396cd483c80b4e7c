package store

import (
	"encoding/json"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Limits of the validated fields.
const (
	// MaxNameLength is OpenWhisk's EntityName limit, per path segment.
	MaxNameLength = 256
	// MaxNamespaceLength bounds a whole namespace path: an activation's
	// namespace is a namespace or a namespace and a package, each an
	// EntityName (ASCII, so bytes are characters).
	MaxNamespaceLength = 2*MaxNameLength + 1
	// ActivationIDLength is the length of an activation id: a UUID without dashes.
	ActivationIDLength = 32
	// MinSubjectLength is OpenWhisk's Subject.MIN_LENGTH, counted as
	// SubjectLength counts.
	MinSubjectLength = 5
)

// ValidateActivation checks every field a store relies on and every rule of
// OpenWhisk's reader, so that nothing malformed reaches a database or a
// topic, and nothing OpenWhisk would read as another value or could not
// read at all: a response.size or status code beyond a Scala Int (MaxScalaInt),
// a raw JSON value with a number OpenWhisk cannot parse (NumberProblem) or
// nested too deep (MaxRawNesting). Values OpenWhisk normalises are
// accepted and checked as normalised (see Normalize): a subject is trimmed
// before its length is checked. The error is an *InvalidError naming the
// field.
func ValidateActivation(a *Activation) error {
	if a == nil {
		return &InvalidError{Field: "activation", Reason: "is nil"}
	}
	if err := ValidateNamespace(a.Namespace); err != nil {
		return err
	}
	if err := ValidateEntityName(a.Name); err != nil {
		return err
	}
	if err := ValidateActivationID(a.ActivationID); err != nil {
		return err
	}
	if err := validateSubject(a.Subject); err != nil {
		return err
	}
	if a.Cause != "" {
		if err := validateID("cause", a.Cause); err != nil {
			return err
		}
	}
	if err := ValidateVersion(a.Version); err != nil {
		return err
	}
	if c := a.Response.StatusCode; c < StatusSuccess || c > StatusWhiskError {
		return &InvalidError{Field: "response.statusCode", Value: itoa(c), Reason: "must be 0 (success), 1 (application error), 2 (developer error) or 3 (whisk error)"}
	}
	if err := validateRaw("response.result", a.Response.Result); err != nil {
		return err
	}
	if s := a.Response.Size; s != nil && *s < 0 {
		return &InvalidError{Field: "response.size", Value: strconv.FormatInt(*s, 10), Reason: "is negative"}
	}
	if s := a.Response.Size; s != nil && *s > MaxScalaInt {
		return &InvalidError{Field: "response.size", Value: strconv.FormatInt(*s, 10),
			Reason: "is larger than 2147483647: OpenWhisk reads it as a Scala Int, which would wrap to another number"}
	}
	if a.Duration != nil && *a.Duration < 0 {
		return &InvalidError{Field: "duration", Value: itoa(int(*a.Duration)), Reason: "is negative"}
	}
	for i, an := range a.Annotations {
		if an.Key == "" {
			return &InvalidError{Field: "annotations[" + itoa(i) + "].key", Reason: "is empty"}
		}
		if !utf8.ValidString(an.Key) {
			return invalid("annotations["+itoa(i)+"].key", an.Key, "is not valid UTF-8")
		}
		if !utf8.ValidString(an.Encryption) {
			return invalid("annotations["+itoa(i)+"].encryption", an.Encryption, "is not valid UTF-8")
		}
		if err := validateRaw("annotations["+itoa(i)+"].value", an.Value); err != nil {
			return err
		}
	}
	for i, l := range a.Logs {
		if !utf8.ValidString(l) {
			return &InvalidError{Field: "logs[" + itoa(i) + "]", Reason: "is not valid UTF-8"}
		}
	}
	return nil
}

// ValidateNamespace checks an OpenWhisk EntityPath ("guest", "guest/pkg"):
// one or more entity names joined by "/", in the form OpenWhisk writes it
// (no empty segments). The first segment must not start with "_": it begins
// the CouchDB document id "<namespace>/<activationId>", and CouchDB reserves
// ids starting with "_" (_design/x, _local/x). Later segments may, as in
// OpenWhisk ("guest/_pkg").
func ValidateNamespace(ns string) error {
	const field = "namespace"
	if ns == "" {
		return &InvalidError{Field: field, Reason: "is empty"}
	}
	if len(ns) > MaxNamespaceLength {
		return invalid(field, ns, "is longer than "+itoa(MaxNamespaceLength)+" bytes")
	}
	if ns[0] == '_' {
		return invalid(field, ns, "must not start with an underscore: CouchDB reserves document ids starting with _")
	}
	for seg := range strings.SplitSeq(ns, "/") {
		if reason := entityNameReason(seg); reason != "" {
			return invalid(field, ns, "segment "+quoteShort(seg)+" "+reason)
		}
	}
	return nil
}

// ValidateActivationID checks an activation id: 32 lowercase hexadecimal characters.
func ValidateActivationID(id string) error { return validateID("activationId", id) }

// ValidateName checks a query's action path relative to its namespace:
// "action" or "pkg/action".
func ValidateName(name string) error {
	const field = "name"
	segs := strings.Split(name, "/")
	if len(segs) > 2 {
		return invalid(field, name, "has more than two segments (want action or package/action)")
	}
	for _, seg := range segs {
		if reason := entityNameReason(seg); reason != "" {
			return invalid(field, name, "segment "+quoteShort(seg)+" "+reason)
		}
	}
	return nil
}

// ValidateEntityName checks an action, trigger or package name with
// OpenWhisk's EntityName rule \A([\w]|[\w][\w@ .&-]{0,254}[\w@.&-])\z, where
// \w is ASCII [A-Za-z0-9_]. A leading underscore is valid ("_util", "_",
// "_ _"): a name is never the start of a document id. The error names the
// field "name" and, for a refused character, the character as written.
func ValidateEntityName(name string) error {
	if reason := entityNameReason(name); reason != "" {
		return invalid("name", name, reason)
	}
	return nil
}

// ValidateQuery checks a query before it reaches a database.
func ValidateQuery(q Query) error {
	if err := ValidateNamespace(q.Namespace); err != nil {
		return err
	}
	if q.Name != "" {
		if err := ValidateName(q.Name); err != nil {
			return err
		}
	}
	if q.Skip < 0 {
		return &InvalidError{Field: "skip", Value: itoa(q.Skip), Reason: "is negative"}
	}
	if q.Limit < 0 {
		return &InvalidError{Field: "limit", Value: itoa(q.Limit), Reason: "is negative"}
	}
	return nil
}

// ValidateVersion checks an OpenWhisk SemVer: "major[.minor[.patch]]" of
// non-negative integers, not all zero.
func ValidateVersion(v string) error {
	const field = "version"
	if v == "" {
		return &InvalidError{Field: field, Reason: "is empty (OpenWhisk's default is " + DefaultVersion + ")"}
	}
	parts := strings.Split(v, ".")
	if len(parts) > 3 {
		return invalid(field, v, "is not major.minor.patch")
	}
	nonZero := false
	for _, p := range parts {
		if p == "" || len(p) > 9 {
			return invalid(field, v, "is not major.minor.patch")
		}
		for _, c := range []byte(p) {
			if c < '0' || c > '9' {
				return invalid(field, v, "is not major.minor.patch")
			}
			if c != '0' {
				nonZero = true
			}
		}
	}
	if !nonZero {
		return invalid(field, v, "must not be 0.0.0")
	}
	return nil
}

// validateRaw checks a raw JSON value: valid, and readable by OpenWhisk.
// nil is absent (or, for an annotation value, null).
func validateRaw(field string, raw json.RawMessage) error {
	if raw == nil {
		return nil
	}
	if !json.Valid(raw) {
		return &InvalidError{Field: field, Reason: "is not valid JSON"}
	}
	if p := rawProblem(raw); p != "" {
		return &InvalidError{Field: field, Reason: p}
	}
	return nil
}

func validateSubject(s string) error {
	const field = "subject"
	switch {
	case !utf8.ValidString(s):
		return invalid(field, s, "is not valid UTF-8")
	case SubjectLength(s) < MinSubjectLength:
		return invalid(field, s, "is shorter than "+itoa(MinSubjectLength)+" characters once trimmed as OpenWhisk trims it (UTF-16 code units; leading and trailing characters up to U+0020 not counted)")
	}
	// Nothing stricter: OpenWhisk's Subject takes any string of that
	// length, and JSON carries control characters escaped.
	return nil
}

// SubjectLength is the length OpenWhisk's Subject reader measures: it trims
// s as Java's String.trim does (TrimSubject) and counts UTF-16 code units, so "ééééé" has 5 and a rune outside the Basic
// Multilingual Plane counts 2. OpenWhisk refuses a subject shorter than
// MinSubjectLength; so do this package and the codec. A byte that is not
// valid UTF-8 counts 1.
func SubjectLength(s string) int {
	return utf16Len(TrimSubject(s))
}

func utf16Len(s string) int {
	n := 0
	for _, r := range s {
		if r >= 0x10000 {
			n += 2 // a surrogate pair
		} else {
			n++
		}
	}
	return n
}

func validateID(field, id string) error {
	if len(id) != ActivationIDLength {
		return invalid(field, id, "must be "+itoa(ActivationIDLength)+" lowercase hexadecimal characters, has length "+itoa(len(id)))
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return invalid(field, id, "must be "+itoa(ActivationIDLength)+" lowercase hexadecimal characters")
		}
	}
	return nil
}

// entityNameReason applies OpenWhisk's EntityName rule. It returns why s
// is refused, or "" when s is valid. Characters are reported as written:
// runes, not bytes, and a byte that is not UTF-8 as \xNN.
func entityNameReason(s string) string {
	if s == "" {
		return "is empty"
	}
	first, _ := utf8.DecodeRuneInString(s)
	if !isWord(first) {
		return "must start with a letter, digit or underscore, not " + quoteRuneAt(s, 0)
	}
	for i, r := range s {
		if i > 0 && !isWord(r) && r != '@' && r != ' ' && r != '.' && r != '&' && r != '-' {
			return "contains " + quoteRuneAt(s, i) + " (allowed: letters, digits, _ @ . & - and inner spaces)"
		}
	}
	if len(s) > MaxNameLength { // only ASCII is left: bytes are characters
		return "is longer than " + itoa(MaxNameLength) + " characters"
	}
	if s[len(s)-1] == ' ' {
		return "must not end with a space"
	}
	return ""
}

// isWord reports whether r is in Java's default \w: ASCII letters, digits and "_".
func isWord(r rune) bool {
	return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_'
}

// quoteRuneAt quotes the character that starts at byte i of s: the rune
// when s holds valid UTF-8 there, the byte as \xNN otherwise.
func quoteRuneAt(s string, i int) string {
	r, size := utf8.DecodeRuneInString(s[i:])
	if r == utf8.RuneError && size <= 1 {
		const hex = "0123456789abcdef"
		c := s[i]
		return `'\x` + string(hex[c>>4]) + string(hex[c&0xf]) + `'`
	}
	return strconv.QuoteRune(r)
}

// quoteShort quotes a value for an error text, shortened as InvalidError.Value is.
func quoteShort(s string) string { return strconv.Quote(shorten(s)) }

// shorten cuts s to about maxShownValue bytes, at a rune boundary so that
// the text never shows half a character.
func shorten(s string) string {
	if len(s) <= maxShownValue {
		return s
	}
	cut := maxShownValue
	for cut > maxShownValue-utf8.UTFMax && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

func itoa(i int) string { return strconv.Itoa(i) }
