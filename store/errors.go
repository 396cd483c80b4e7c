package store

import (
	"errors"
	"fmt"
	"strconv"
)

// Sentinel errors, matched with errors.Is. Drivers wrap them with the
// document id or field concerned.
var (
	// ErrNotFound: no record with that namespace and activation id.
	ErrNotFound = errors.New("activation not found")
	// ErrConflict: a record with that document id exists already. For a
	// persister this means the record is already persisted.
	ErrConflict = errors.New("activation conflict: document exists")
	// ErrInvalid: the input is malformed; nothing was written.
	ErrInvalid = errors.New("invalid activation input")
)

// InvalidError names the field that failed validation. It matches ErrInvalid.
type InvalidError struct {
	Field  string // e.g. "namespace", "activationId", "response.statusCode"
	Value  string // the offending value, shortened for display
	Reason string
}

func (e *InvalidError) Error() string {
	if e.Value == "" {
		return fmt.Sprintf("invalid %s: %s", e.Field, e.Reason)
	}
	return fmt.Sprintf("invalid %s %s: %s", e.Field, e.Value, e.Reason)
}

// Is makes errors.Is(err, ErrInvalid) true.
func (e *InvalidError) Is(target error) bool { return target == ErrInvalid }

const maxShownValue = 64

func invalid(field, value, reason string) *InvalidError {
	return &InvalidError{Field: field, Value: strconv.Quote(shorten(value)), Reason: reason}
}

// NotFoundError returns ErrNotFound wrapped with the document id.
func NotFoundError(namespace, activationID string) error {
	return fmt.Errorf("%w: %s", ErrNotFound, strconv.Quote(DocID(namespace, activationID)))
}

// ConflictError returns ErrConflict wrapped with the document id.
func ConflictError(docID string) error {
	return fmt.Errorf("%w: %s", ErrConflict, strconv.Quote(docID))
}
