// Package store is the contract between the services that produce OpenWhisk
// activation records and the places that keep them.
//
// A [Store] persists and reads [Activation] records. Drivers live in other
// packages: primary/memory (the reference implementation), primary/couchdb
// (shares a database with a Scala OpenWhisk) and kafkastore (a decorator that
// publishes writes to Kafka and delegates reads). Every driver passes the
// conformance suite in store/storetest.
//
// Errors are matched with errors.Is against [ErrNotFound], [ErrConflict] and
// [ErrInvalid]; an [*InvalidError] names the offending field.
package store
