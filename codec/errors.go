package codec

import (
	"errors"
	"strconv"

	"github.com/go-whisk/activationstore/store"
)

// ErrMalformed is matched (errors.Is) by every error of Decode and the
// Unmarshal functions: the input is not a record this package can read.
// The concrete error is an *Error naming the member at fault.
var ErrMalformed = errors.New("codec: malformed record")

// Error describes why a record could not be decoded.
type Error struct {
	// Field is the path of the offending member, e.g. "response.annotations[2].key";
	// "" for the record as a whole.
	Field string
	// Reason says what is wrong, e.g. "want a JSON object or activation id string, got number".
	Reason string
	// Offset is the byte offset in the input near which the problem was
	// found; -1 when it concerns a member that is missing.
	Offset int64

	writeProblem bool // a value that reads but that a writer refuses
}

func (e *Error) Error() string {
	if e.Field == "" {
		return "codec: " + e.Reason
	}
	return "codec: " + e.Field + ": " + e.Reason
}

// Is makes errors.Is(err, ErrMalformed) true.
func (e *Error) Is(target error) bool { return target == ErrMalformed }

func missing(prefix, member string) *Error {
	return &Error{Field: join(prefix, member), Reason: "missing required member", Offset: -1}
}

func join(prefix, member string) string {
	if prefix == "" {
		return member
	}
	return prefix + "." + member
}

// invalidInput reports a value that cannot be encoded. Encoding errors
// match store.ErrInvalid: the caller handed over a malformed activation.
func invalidInput(field, reason string) error {
	return &store.InvalidError{Field: field, Reason: reason}
}

func itoa(i int) string { return strconv.Itoa(i) }
