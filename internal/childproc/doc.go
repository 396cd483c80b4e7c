// Package childproc ties the servers the test harnesses start (Kafka and
// ZooKeeper JVMs, Elasticsearch/OpenSearch JVMs, CouchDB nodes) to the
// test binary: where the kernel allows it, a server dies with the binary,
// even when that is killed by SIGKILL or a test timeout, so that no
// server outlives its tests.
package childproc
