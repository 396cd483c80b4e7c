// Package losstest proves that the activation persister loses nothing.
//
// Its tests drive persister.Persister — in process, and as the
// examples/persister service — through the failures a production
// deployment meets: the process killed with SIGKILL in the middle of a
// drain, the database unreachable for seconds, consumer group rebalances
// under load, poison records mixed into good ones, a Kafka node killed
// under acks=all Stores (the leader of the busiest partition, then the
// group coordinator), the CouchDB node a persister writes to killed or
// stopped in a 3-node CouchDB cluster (twice, then another node), after
// which no document may have a second leaf revision (_conflicts). Each
// test then reads back every activation from the
// primary (and every poison record from the dead-letter topic) and checks
// that each one is there exactly once. A last test checks that a stopped
// persister leaves no goroutine behind and that its heap stays within its
// in-flight cap, plus the documented overhead of each compression codec,
// while draining a backlog.
//
// The tests run against the broker internal/kafkatest selects (the
// broker-loss test always against a three-node Apache Kafka cluster of its
// own, the heap test against kfake in a child process, so that the broker
// is not in the measured heap) and the CouchDB internal/couchtest selects
// (a real single node, or COUCHTEST=cluster; the chaos test always on a
// 3-node cluster of its own); -short shrinks the volumes. Each test logs one line
// "SUMMARY <test>: …" with its figures.
//
// The non-test files hold the helpers the tests share: numbered
// activations whose ids map back to their number, a bulk producer, a
// reader of a CouchDB database's document ids, and a primary that only
// marks which activations it has seen.
package losstest
