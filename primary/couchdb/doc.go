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
// Consistency: a record is listed and counted by every List and Count that
// starts after its Store or StoreBatch returned, on a single node and on a
// cluster (read-your-writes). Two defaults make it so: writes wait for
// every copy of the document (CouchDB's w = the database's n,
// [WithWriteQuorum]), since a view query reads one copy of each shard; and
// List and Count wait for the view index to include every write. OpenWhisk
// writes with a majority and queries with stale=update_after, which is
// faster but may miss the latest records: [WithWriteQuorum](WriteMajority)
// and [WithStaleUpdateAfter] choose that.
//
// Duplicates and conflicts: the "updated" member of a document comes from
// the record (its end, else its start), so every write of one activation —
// a retry, a redelivery, a second publication — is byte-identical and
// CouchDB computes the same revision on every copy: no conflicting revision
// forms. A write that CouchDB answers 202 (fewer copies than the quorum
// took it: a node down, or a copy that already had the document) is checked
// on every copy; a document that turns out to have another live revision
// keeps only the one CouchDB shows, and the write is a duplicate,
// store.ErrConflict, as a 409 would be. Delete removes every live revision,
// so a deleted activation never comes back.
package couchdb
