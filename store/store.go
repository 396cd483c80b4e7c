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

// The optional capabilities of a Store are named interfaces, as in
// database/sql/driver: a caller checks for one with a type assertion, and
// store/storetest checks the contract of each one a driver implements.
// A decorator (kafkastore.Store) implements the ones it can pass on; where
// its inner store lacks one, it answers as the interface's doc says a store
// without it answers.

// BatchStorer is implemented by stores that write many records in one round
// trip (primary/memory, primary/couchdb, primary/elasticsearch). Callers
// that hold many records check for it and fall back to concurrent Store
// calls.
type BatchStorer interface {
	// StoreBatch stores every record. A non-nil error means the batch as a
	// whole failed (nothing can be assumed stored). Otherwise the results
	// align with as, each with its own error, and one record's error never
	// keeps the others from being stored: ErrConflict when its document
	// exists (the stored one is left as it was), an *InvalidError
	// (ErrInvalid) when it is malformed (it is not written), or a transient
	// error of the driver's when its part of the batch failed. A stored
	// record's DocInfo names its document, as Store's does. An empty batch stores nothing
	// and returns no results.
	StoreBatch(ctx context.Context, as []*Activation, uc UserContext) ([]BatchResult, error)
}

// BatchResult is the outcome of one record of a batch.
type BatchResult struct {
	DocInfo DocInfo
	Err     error
}

// FilterViewer is implemented by stores that report which name filter
// Query.Name is matched with (primary/couchdb: the version of OpenWhisk's
// filters view the database holds; primary/elasticsearch:
// FilterViewElasticSearch; primary/memory: the view it emulates). A store
// without it matches as FilterViewV211, OpenWhisk master's view.
type FilterViewer interface {
	// FilterView returns the same value for the life of the store: one of
	// FilterViewV210, FilterViewV211 and FilterViewElasticSearch.
	FilterView() FilterView
}
