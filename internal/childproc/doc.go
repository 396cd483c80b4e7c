// Package childproc runs the servers the test harnesses start (Kafka and
// ZooKeeper JVMs, Elasticsearch/OpenSearch JVMs, CouchDB nodes) as
// [Process]es: started, killed and restarted with one log across
// restarts, measured (RSS, CPU time of the process tree), and tied to the
// test binary: where the kernel allows it, a server dies with the binary,
// even when that is killed by SIGKILL or a test timeout, so that no
// server outlives its tests. [FreePorts] and [RetryPortTaken] pick the
// servers' ports.
package childproc
