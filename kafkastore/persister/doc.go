// Package persister is the consumer side of kafkastore: [New] returns a
// [Persister] whose [Persister.Run] follows every Kafka topic matching a
// pattern (^completed.* by default, the invokers' completed<N> acks and
// the Store's completed-others; ^activations$ when logs live inside the
// activation), decodes each record with codec.Decode and writes the
// activations in batches to the primary (primary/couchdb,
// primary/elasticsearch, or primary/memory in tests). It runs in its own
// service (examples/persister), apart from the controllers and invokers
// that hold a kafkastore.Store.
//
// Delivery is at least once: an offset is committed only once every record
// before it is persisted, found already persisted (a conflict counts as
// persisted, so redelivery is harmless), skipped (a record that carries no
// activation, or one its writer marked with kafkastore.HeaderStoreSkip) or
// dead-lettered (undecodable or invalid records go to a dead-letter topic,
// with the reason in its headers). A primary that fails is retried with
// backoff, without committing; the bytes in flight are capped
// ([WithMaxInFlightBytes]). Scale out by running several persisters in one
// consumer group ([WithGroupID]); new topics matching the pattern are
// picked up while running. [Persister.Stats] snapshots the counters, the
// per-partition lag and records lost to retention.
//
// # Options
//
// [Option] is this package's option type. The connection settings are
// kafkastore's, shared with the Store: kafkastore.WithBrokers (required),
// WithClientID, WithLogger, WithTLS, WithSASL, or kafkastore.Connection
// bundling them. A Store option (kafkastore.WithTopic, …) given to New does
// not compile.
//
// # Files
//
// persister.go holds the type and New; run.go the Run loop (discovery,
// group joins, retries); generation.go the pipeline of one group
// generation, fed by read.go (partition readers), batched by batch.go,
// written by write.go (the write policy: batches or bounded concurrent
// Store calls, retries, conflicts) and committed by commit.go with
// offsets.go; budget.go is the weighted semaphore on the bytes in flight;
// group.go the consumer-group membership; discovery.go the topic watch;
// deadletter.go, storeskip.go, brokercheck.go, loss.go and stats.go what
// their names say.
package persister
