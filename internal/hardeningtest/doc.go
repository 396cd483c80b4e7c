// Package hardeningtest holds tests only: it proves that the activation
// stores stay safe and bounded when their inputs and their brokers turn
// hostile. Against the real in-process Kafka broker (kfake) and the
// CouchDB-protocol test server, never mocks, it shows that
//
//   - broker trouble (a closed port, a broker that dies mid-run) makes
//     kafkastore.Store fail with a clear ErrPublish within its publish
//     timeout, or fall back to the primary when told to, and that neither
//     the Store nor a Persister whose Run was cancelled leaks goroutines;
//   - hostile namespaces, activation ids, action names and causes
//     ("_design/x", "../x", NUL, newlines, 10 KB names, upper-case or
//     33-character ids, encoded or look-alike slashes) are refused with
//     store.ErrInvalid by every store — memory, CouchDB, and the Kafka store
//     with and without store-in-primary — for Store, Get, Delete, List and
//     Count, before any request reaches CouchDB or any record reaches
//     Kafka; and that such records arriving on a topic are dead-lettered
//     while the partition keeps moving;
//   - credentials (a CouchDB URL's userinfo, Kafka SASL passwords) never
//     appear in a log line at debug level or in an error text, on the happy
//     path and on failure paths alike, nor on the standard error of the
//     persister service;
//   - on real Apache Kafka's TLS, SASL/SCRAM-SHA-512 and SASL_SSL listeners
//     the Store, a Persister and the persister service work, and a wrong
//     password or an untrusted certificate fails within a bound with an
//     error naming the cause, while a Persister or the service stays not
//     ready and logs why.
//
// Each test logs one "SUMMARY <test>:" line of figures.
package hardeningtest
