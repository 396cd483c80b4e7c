// Package store is the contract between the services that produce OpenWhisk
// activation records and the places that keep them.
//
// A [Store] persists and reads [Activation] records. Drivers live in other
// packages:
//
//   - primary/memory: in memory, the reference implementation;
//   - primary/couchdb: CouchDB, sharing a database with a Scala OpenWhisk;
//   - primary/elasticsearch: Elasticsearch or OpenSearch, sharing indices
//     with a Scala OpenWhisk's ElasticSearchActivationStore;
//   - kafkastore: a decorator that publishes writes to Kafka (a persister
//     writes them to one of the primaries above) and delegates reads to
//     its primary.
//
// Optional capabilities are named interfaces a caller checks for:
// [BatchStorer] (many records in one round trip), [DurationStater] (the
// duration statistics of OpenWhisk's scheduler) and [FilterViewer] (which
// name filter Query.Name uses). Every driver passes the conformance suite
// in store/storetest, which also checks each capability the driver has.
//
// Errors are matched with errors.Is against [ErrNotFound], [ErrConflict],
// [ErrInvalid] and [ErrUnsupported]; an [*InvalidError] names the
// offending field.
package store
