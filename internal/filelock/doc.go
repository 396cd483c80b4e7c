// Package filelock holds exclusive advisory locks on files: Lock waits for
// the lock and serialises one-time setup between test binaries that run at
// once (go test runs packages in parallel): installing the CouchDB test
// server's node modules, resolving the Kafka jars; TryLock refuses at once
// and gives a directory one owner (the Kafka store's spool).
package filelock
