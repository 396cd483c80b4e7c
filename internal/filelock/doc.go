// Package filelock serialises one-time setup between test binaries that
// run at once (go test runs packages in parallel): installing the CouchDB
// test server's node modules, resolving the Kafka jars.
package filelock
