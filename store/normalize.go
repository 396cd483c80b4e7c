package store

import (
	"math"
	"strconv"
	"strings"
)

// Limits of OpenWhisk's JSON reader (spray-json 1.3.5, which both the PR
// #4632 era and master use, with java.math.BigDecimal numbers) that a
// writer must respect so that OpenWhisk can read what it writes.
const (
	// MaxNumberLength is spray-json's maxNumberCharacters: a longer number
	// literal fails the whole document ("Number too long").
	MaxNumberLength = 100
	// MaxRawNesting bounds how deep a raw JSON value (a result, an
	// annotation value) may nest: spray-json refuses values nested 1000
	// deep, and an annotation value sits 4 levels down in an ack
	// (ack, activation, annotations, annotation). [[1]] nests 2 deep.
	MaxRawNesting = 995
	// MaxScalaInt is the largest value of a Scala Int (response.size, an
	// invoker's instance number, statusCode): OpenWhisk reads a larger
	// JSON number modulo 2^32, as another number.
	MaxScalaInt = math.MaxInt32
)

// TrimSubject returns s as OpenWhisk's Subject reader keeps it: trimmed as
// Java's String.trim trims, of every leading and trailing character up to
// U+0020 (control characters included). OpenWhisk checks the length of the
// trimmed subject and stores it trimmed; so do this package and the codec.
func TrimSubject(s string) string {
	return strings.TrimFunc(s, func(r rune) bool { return r <= ' ' })
}

// NormalizeVersion returns the semantic version as OpenWhisk writes it back
// after reading v: "major.minor.patch" without leading zeros ("1.02" is
// "1.2.0", "3" is "3.0.0"); "" is DefaultVersion. It returns v unchanged
// when v is not a version ValidateVersion accepts.
func NormalizeVersion(v string) string {
	if v == "" {
		return DefaultVersion
	}
	if v == DefaultVersion || ValidateVersion(v) != nil {
		return v
	}
	var parts [3]int64
	for i, p := range strings.SplitN(v, ".", 3) {
		parts[i], _ = strconv.ParseInt(p, 10, 64) // at most 9 digits: cannot fail
	}
	return strconv.FormatInt(parts[0], 10) + "." + strconv.FormatInt(parts[1], 10) + "." + strconv.FormatInt(parts[2], 10)
}

// NormalizeNamespace returns the EntityPath as OpenWhisk writes it back:
// empty segments dropped ("guest//pkg/" is "guest/pkg").
func NormalizeNamespace(ns string) string {
	if !strings.Contains(ns, "/") || !strings.HasPrefix(ns, "/") && !strings.HasSuffix(ns, "/") && !strings.Contains(ns, "//") {
		return ns
	}
	return strings.Join(strings.FieldsFunc(ns, func(r rune) bool { return r == '/' }), "/")
}

// Normalize returns a copy of a as a Scala OpenWhisk holds it after reading
// it, and so as the codec writes it and reads it back: the namespace
// without empty segments, the subject trimmed (TrimSubject), the version
// normalised (NormalizeVersion). Every other field is copied as is. Stores
// keep activations normalised, so that every primary returns the same
// record.
func Normalize(a *Activation) *Activation {
	if a == nil {
		return nil
	}
	c := a.Clone()
	c.Namespace = NormalizeNamespace(c.Namespace)
	c.Subject = TrimSubject(c.Subject)
	c.Version = NormalizeVersion(c.Version)
	return c
}

// NumberProblem says why OpenWhisk's JSON reader cannot read the JSON
// number literal lit, or returns "" when it can. spray-json refuses a
// literal longer than MaxNumberLength characters, and java.math.BigDecimal
// one whose exponent, or whose scale (digits after the point minus the
// exponent), is not a Java int: "1e2147483648" fails to parse, and the
// whole activation or ack with it.
func NumberProblem(lit []byte) string {
	if len(lit) > MaxNumberLength {
		return "has a number of " + strconv.Itoa(len(lit)) + " characters; OpenWhisk's JSON parser reads at most " + strconv.Itoa(MaxNumberLength)
	}
	e := len(lit)
	for i, c := range lit {
		if c == 'e' || c == 'E' {
			e = i
			break
		}
	}
	if e == len(lit) {
		return ""
	}
	frac := 0 // digits after the point: BigDecimal's scale before the exponent
	for i, c := range lit[:e] {
		if c == '.' {
			frac = e - i - 1
		}
	}
	// the literal is at most 100 characters: the exponent fits an int64
	// once its leading zeros are dropped, or it has more than 18 digits
	digits := strings.TrimLeft(strings.TrimLeft(string(lit[e+1:]), "+-"), "0")
	neg := len(lit) > e+1 && lit[e+1] == '-'
	exp, err := strconv.ParseInt(digits, 10, 64)
	if digits == "" {
		exp, err = 0, nil
	}
	if neg {
		exp = -exp
	}
	if err != nil || exp < math.MinInt32 || exp > math.MaxInt32 {
		return "has the number " + shorten(string(lit)) + " whose exponent overflows a Java int; OpenWhisk's JSON parser (BigDecimal) cannot read it"
	}
	if scale := int64(frac) - exp; scale < math.MinInt32 || scale > math.MaxInt32 {
		return "has the number " + shorten(string(lit)) + " whose scale overflows a Java int; OpenWhisk's JSON parser (BigDecimal) cannot read it"
	}
	return ""
}

// rawProblem checks a raw JSON value that is valid JSON against what
// OpenWhisk's reader can read: its numbers (NumberProblem) and its nesting
// (MaxRawNesting). It returns "" when OpenWhisk reads it.
func rawProblem(raw []byte) string {
	depth := 0
	for i := 0; i < len(raw); i++ {
		switch c := raw[i]; {
		case c == '"':
			for i++; i < len(raw) && raw[i] != '"'; i++ {
				if raw[i] == '\\' {
					i++
				}
			}
		case c == '[' || c == '{':
			depth++
			if depth > MaxRawNesting {
				return "nests deeper than " + strconv.Itoa(MaxRawNesting) + " levels; OpenWhisk's JSON parser reads at most 1000 in a whole record"
			}
		case c == ']' || c == '}':
			depth--
		case c == '-' || c >= '0' && c <= '9':
			j := i
			for j < len(raw) && (raw[j] == '-' || raw[j] == '+' || raw[j] == '.' || raw[j] == 'e' || raw[j] == 'E' || raw[j] >= '0' && raw[j] <= '9') {
				j++
			}
			if p := NumberProblem(raw[i:j]); p != "" {
				return p
			}
			i = j - 1
		}
	}
	return ""
}
