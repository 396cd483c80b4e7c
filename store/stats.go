package store

import (
	"context"
	"errors"
	"strings"
	"time"
)

// ErrUnsupported: the store cannot answer this kind of request (a
// CouchDB primary asked for duration statistics). Matched with errors.Is.
var ErrUnsupported = errors.New("operation not supported by this store")

// DurationQuery names the activations whose durations OpenWhisk's scheduler
// averages (ElasticSearchDurationChecker): those of one action in one
// invocation namespace that started at or after Since.
type DurationQuery struct {
	// Namespace is the invocation namespace: the namespace of the
	// activations (and, in Elasticsearch, the index they live in).
	Namespace string
	// Action is the action's fully qualified name without version,
	// "ns/action" or "ns/pkg/action": the activations whose path is Action.
	// Used when Binding is empty.
	Action string
	// Binding is the package binding the action was invoked through
	// ("ns/binding"), and Name the action's name: the activations whose
	// path is Binding + "/" + Name. Empty when not invoked through a binding.
	Binding, Name string
	// Since bounds the activations' start (inclusive): OpenWhisk asks for
	// now minus its time window.
	Since time.Time
}

// DurationStats is the answer to a DurationQuery, as OpenWhisk's
// DurationCheckResult: the number of matching activations and the average
// of the durations of those that have one.
type DurationStats struct {
	// Average is the mean duration in milliseconds; nil when no matching
	// activation has a duration.
	Average *float64
	// Count is the number of matching activations, with or without a duration.
	Count int64
}

// DurationStater is implemented by stores that answer the duration
// statistics of OpenWhisk's scheduler (primary/elasticsearch,
// primary/memory). Callers check for it; a store that implements it but
// cannot answer (kafkastore.Store over a primary without it) returns an
// error matching ErrUnsupported for every query.
type DurationStater interface {
	// DurationStats counts the activations of q.Namespace whose
	// Elasticsearch "path" (codec.ElasticsearchPath) is q.Action, or
	// q.Binding + "/" + q.Name, and that start at or after q.Since (a zero
	// Since: no bound), and averages the durations of those that have
	// one. A query ValidateDurationQuery refuses gets its *InvalidError
	// (ErrInvalid); no matching activation gives a zero Count and a nil
	// Average.
	DurationStats(ctx context.Context, q DurationQuery, uc UserContext) (DurationStats, error)
}

// ValidateDurationQuery checks the namespace and that an action is named:
// Action ("ns/action" or "ns/pkg/action"), or Binding and Name.
func ValidateDurationQuery(q DurationQuery) error {
	if err := ValidateNamespace(q.Namespace); err != nil {
		return err
	}
	if q.Binding != "" {
		if err := ValidateNamespace(q.Binding); err != nil {
			e := err.(*InvalidError)
			e.Field = "binding"
			return e
		}
		if err := ValidateEntityName(q.Name); err != nil {
			return err
		}
		return nil
	}
	if q.Action == "" {
		return &InvalidError{Field: "action", Reason: "is empty (want ns/action or ns/pkg/action, or a binding and a name)"}
	}
	if err := ValidateNamespace(q.Action); err != nil || strings.Count(q.Action, "/") < 1 || strings.Count(q.Action, "/") > 2 {
		return invalid("action", q.Action, "must be a fully qualified action name: ns/action or ns/pkg/action")
	}
	return nil
}
