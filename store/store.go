package store

import "context"

// Store persists and reads activation records. Implementations are safe for
// concurrent use. OpenWhisk's ActivationStore trait is the model; Get and
// Delete take the namespace and the bare activation id.
type Store interface {
	// Store persists a. It returns ErrConflict when a record with the same
	// document id exists, and ErrInvalid before writing anything when a
	// field is malformed.
	Store(ctx context.Context, a *Activation, uc UserContext) (DocInfo, error)
	// Get returns the record, or ErrNotFound.
	Get(ctx context.Context, namespace, activationID string, uc UserContext) (*Activation, error)
	// Delete removes the record, or returns ErrNotFound.
	Delete(ctx context.Context, namespace, activationID string, uc UserContext) error
	// List returns the matching records, newest first.
	List(ctx context.Context, q Query, uc UserContext) ([]*Activation, error)
	// Count returns the number of matching records minus q.Skip, floored at 0;
	// q.Limit and q.IncludeDocs are ignored.
	Count(ctx context.Context, q Query, uc UserContext) (int, error)
}

// BatchStorer is implemented by stores that write many records in one round
// trip. Callers that hold many records check for it and fall back to
// concurrent Store calls.
type BatchStorer interface {
	// StoreBatch stores every record. A non-nil error means the batch as a
	// whole failed (nothing can be assumed stored); otherwise the results
	// align with as, each with its own error (ErrConflict, ErrInvalid, …).
	StoreBatch(ctx context.Context, as []*Activation, uc UserContext) ([]BatchResult, error)
}

// BatchResult is the outcome of one record of a batch.
type BatchResult struct {
	DocInfo DocInfo
	Err     error
}
