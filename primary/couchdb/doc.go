// Package couchdb is a store.Store that keeps activations in Apache CouchDB
// (or any server of its protocol), in OpenWhisk's format, so that it can
// share an activations database with a Scala OpenWhisk deployment.
//
// Documents have OpenWhisk's id "<namespace>/<activationId>" and its
// document form (WhiskActivation fields plus entityType "activation" and
// updated). [New] creates the database and installs OpenWhisk's design
// documents verbatim (whisks.v2.1.0, a filters view, activations,
// logCleanup) when missing; List and Count query the same views with the
// same key ranges as OpenWhisk's controller. The filters view, which
// answers queries by action name, comes in two versions that differ for
// activations made through a package binding: New uses the one the
// database holds, or the one [WithFilterView] names.
//
// [Store.StoreBatch] writes many records in one _bulk_docs request, as
// OpenWhisk's batching activation store does; a duplicate record fails alone
// with store.ErrConflict.
//
// Errors: store.ErrNotFound (404), store.ErrConflict (409) and
// store.ErrInvalid (rejected before any request) are matched with errors.Is.
// Failures worth retrying — 5xx answers, timeouts, refused or broken
// connections — are a [*TransientError] ([IsTransient]). Credentials given
// in the URL are sent as Basic auth and never appear in an error or a log.
//
// Consistency: by default List and Count wait for CouchDB's view index to
// include every write (read-your-writes). OpenWhisk queries with
// stale=update_after instead, which is faster on large databases but may
// miss the latest records; [WithStaleUpdateAfter] turns that on.
package couchdb
