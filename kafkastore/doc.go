// Package kafkastore moves activation writes off the hot path of an
// OpenWhisk-style controller or invoker, following OpenWhisk's Activation
// Persister design (PR #4632): a [Store] publishes each record to Kafka,
// and a persister (package [github.com/go-whisk/activationstore/kafkastore/persister],
// a separate service) consumes the topics and writes the records to the
// primary — the store that keeps activations for reading (primary/couchdb,
// primary/elasticsearch, or primary/memory in tests) — at the rate it can
// take.
//
// # Store
//
// [New] wraps the primary, a [store.Store]. Its Store method validates the
// record, publishes it with acks=all, key = activation id, and returns the
// document id without a revision once every in-sync replica has it; Get,
// List, Count and Delete go to the primary. Concurrent callers share
// produce requests by group commit: records that arrive while earlier
// writes are in flight leave together in the next one, so a lone Store
// costs one round trip and no timer (never kafka-go's default second of
// BatchTimeout) stands in its way.
//
// The record format depends on where logs live:
//
//   - logs stored separately (default topic "completed-others"): an
//     OpenWhisk ResultMessage {"transid":[…],"response":{activation}}, read
//     like the invokers' acks on completed<N>;
//   - logs inside the activation (topic "activations"): the WhiskActivation
//     JSON itself.
//
// The topic name picks the format unless [WithLogsInActivation] sets it.
// Every record carries the headers [HeaderContentType], [HeaderNamespace]
// and [HeaderActivationID]; consumers need none of them.
//
// A record above the maximum request size ([WithMaxRequestSize], by
// default OpenWhisk's MAX_ACTIVATION_LIMIT of 1054644 bytes) is never
// dropped: by default it is stored directly in the primary, or, with
// [OversizeReject], refused with an [*OversizeError]. A broker failover
// costs no error: a batch whose partition leader is unreachable goes at
// once to a partition led by another broker, and on a single-partition
// topic it waits for the election, within the publish timeout (120 s,
// Kafka's delivery.timeout.ms) and the caller's context; a record sent
// again may reach Kafka twice, and the persister stores it once. A publish
// failure is logged, counted and returned as a [*PublishError] (or, with
// [WithFallbackToPrimary], the record goes to the primary). With
// [WithStoreInPrimary] each record is also written to the primary after
// publishing; a [*PrimaryWriteError] then says the record is in Kafka even
// though the primary write failed. New creates a missing topic with a
// retention that covers an outage ([WithTopicRetention], 7 days) rather
// than the hour OpenWhisk's completed* topics keep.
//
// # Spool
//
// Without a spool a Store waits for Kafka: through a broker failover
// (with acks=all, until the controller fences the dead broker, 4 to 14 s)
// and, past the publish timeout, fails. [WithSpool] puts a local log in
// front of Kafka: a Store returns once its record is fdatasynced there
// (concurrent Stores share one write and one sync), and a publisher sends
// the spooled records to Kafka, in spool order, for as long as it takes,
// deleting a segment only once a durable cursor passes it. New then
// succeeds while no broker answers, and a process restarted on the same
// directory publishes what the last one left. [Store.PublishAck] sends an
// invoker's acks the same way. The spool is bounded ([WithSpoolMaxBytes]):
// when full, a Store waits for room, then fails with [ErrSpoolFull] (or
// goes to the primary with WithFallbackToPrimary); nothing unsent is ever
// dropped. [Store.Ready] reports a full spool or a failing disk, and
// package [github.com/go-whisk/activationstore/kafkastore/storemetrics]
// exports the Store's Stats to Prometheus.
//
// # Options
//
// [Option] configures New; the persister has its own option type, so a
// Store option given to persister.New, or a persister option given to New,
// does not compile. The settings both take — [WithBrokers], [WithClientID],
// [WithLogger], [WithTLS], [WithSASL] — are declared here once and return
// a [SharedOption], which both constructors accept; [Connection] bundles
// them into one value to pass to both. Every configuration error matches
// [ErrConfig].
package kafkastore
