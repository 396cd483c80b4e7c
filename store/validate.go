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
	// MaxNamespaceLength bounds a whole namespace path, keeping document ids
	// well inside what CouchDB and Kafka headers carry.
	MaxNamespaceLength = 512
	// ActivationIDLength is the length of an activation id: a UUID without dashes.
	ActivationIDLength = 32
	// MinSubjectLength is OpenWhisk's Subject.MIN_LENGTH.
	MinSubjectLength = 5
	// MaxSubjectLength bounds a subject.
	MaxSubjectLength = 512
)

// ValidateActivation checks every field a store relies on and every rule of
// OpenWhisk's reader, so that nothing malformed reaches a database or a
// topic. The error is an *InvalidError naming the field.
func ValidateActivation(a *Activation) error {
	if a == nil {
		return &InvalidError{Field: "activation", Reason: "is nil"}
	}
	if err := ValidateNamespace(a.Namespace); err != nil {
		return err
	}
	if err := validateEntityName("name", a.Name); err != nil {
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
	if a.Response.Result != nil && !json.Valid(a.Response.Result) {
		return &InvalidError{Field: "response.result", Reason: "is not valid JSON"}
	}
	if a.Response.Size != nil && *a.Response.Size < 0 {
		return &InvalidError{Field: "response.size", Value: itoa(int(*a.Response.Size)), Reason: "is negative"}
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
		if an.Value != nil && !json.Valid(an.Value) {
			return &InvalidError{Field: "annotations[" + itoa(i) + "].value", Reason: "is not valid JSON"}
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
// one or more entity names joined by "/". It rejects whatever could escape a
// CouchDB document id or a URL path: a leading "_" ("_design/x"), "." and
// ".." segments, empty segments, control characters and over-long values.
func ValidateNamespace(ns string) error {
	const field = "namespace"
	if ns == "" {
		return &InvalidError{Field: field, Reason: "is empty"}
	}
	if len(ns) > MaxNamespaceLength {
		return invalid(field, ns, "is longer than "+itoa(MaxNamespaceLength)+" bytes")
	}
	for seg := range strings.SplitSeq(ns, "/") {
		if err := checkEntityName(seg); err != "" {
			return invalid(field, ns, "segment "+err)
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
		if err := checkEntityName(seg); err != "" {
			return invalid(field, name, "segment "+err)
		}
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

func validateEntityName(field, name string) error {
	if err := checkEntityName(name); err != "" {
		return invalid(field, name, err)
	}
	return nil
}

func validateSubject(s string) error {
	const field = "subject"
	switch {
	case len(s) < MinSubjectLength:
		return invalid(field, s, "is shorter than "+itoa(MinSubjectLength)+" characters")
	case len(s) > MaxSubjectLength:
		return invalid(field, s, "is longer than "+itoa(MaxSubjectLength)+" bytes")
	case !utf8.ValidString(s):
		return invalid(field, s, "is not valid UTF-8")
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return invalid(field, s, "contains a control character")
		}
	}
	return nil
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

// checkEntityName applies OpenWhisk's EntityName rule
// \A([\w]|[\w][\w@ .&-]{0,254}[\w@.&-])\z and additionally forbids a leading
// underscore, which CouchDB reserves (_design, _local, _all_docs). It
// returns the reason, or "" when the name is valid.
func checkEntityName(s string) string {
	switch {
	case s == "":
		return "is empty"
	case len(s) > MaxNameLength:
		return "is longer than " + itoa(MaxNameLength) + " characters"
	case s[0] == '_':
		return "must not start with an underscore (reserved by CouchDB)"
	case !isWord(s[0]):
		return "must start with a letter or digit"
	}
	last := s[len(s)-1]
	if len(s) > 1 && !isWord(last) && last != '@' && last != '.' && last != '&' && last != '-' {
		return "must not end with " + quoteByte(last)
	}
	for i := 1; i < len(s); i++ {
		c := s[i]
		if !isWord(c) && c != '@' && c != ' ' && c != '.' && c != '&' && c != '-' {
			return "contains " + quoteByte(c) + " (allowed: letters, digits, _ @ . & - and inner spaces)"
		}
	}
	return ""
}

func isWord(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_'
}

func quoteByte(c byte) string {
	if c < 0x20 || c >= 0x7f {
		const hex = "0123456789abcdef"
		return `\x` + string(hex[c>>4]) + string(hex[c&0xf])
	}
	return "'" + string(c) + "'"
}

func itoa(i int) string { return strconv.Itoa(i) }
