// Package searchtest gives tests a real Elasticsearch or OpenSearch server
// on 127.0.0.1.
//
// Environment variables choose which, the way couchtest's COUCHDB_URL and
// kafkatest's KAFKA_BROKERS do:
//
//   - unset: the version in SEARCHTEST_VERSION ([OpenSearch2],
//     [Elasticsearch7], [Elasticsearch6] or another release of either
//     distribution, "opensearch-X.Y.Z" / "elasticsearch-X.Y.Z"), or
//     [DefaultVersion]; one JVM per version per test binary, shared by
//     every [Start] of the binary (index names from [Server.IndexPrefix]
//     are unique). The distribution is the integ-test zip from Maven
//     Central, with the reindex module (for _delete_by_query) added; both
//     are fetched with mvn on first use into the user's cache directory
//     (~/.cache/activationstore/searchtest), offline afterwards. Java 17 or
//     newer must be on PATH (or in SEARCHTEST_JAVA_HOME: OpenSearch 3 needs
//     Java 21). Wire [Main] into TestMain so that the JVMs stop with the
//     tests; on Linux they die with the test binary in any case.
//   - ELASTICSEARCH_URL=http(s)://[user:password@]host:port: an existing
//     server, shared likewise (ELASTICSEARCH_CA_FILE names the CA of an
//     https one). Its version is read from GET /.
//
// [Start] with [WithTLS] or [WithBasicAuth] puts a reverse proxy in front
// of the server that serves HTTPS with a test CA and/or requires Basic
// auth, as a secured cluster would (the OSS zips have no security plugin).
// [StartCluster] starts a dedicated multi-node cluster whose nodes a test
// may kill and restart.
//
// A test that cannot get its server fails with the reason; none skips.
//
// Start-up, once installed, costs 5-7 s of JVM CPU time (C1-only JVMs, see
// SEARCHTEST_JAVA_OPTS), which is about the wall time on an idle machine;
// the first install downloads 30-60 MB per version. Each node takes
// 200-250 MB of RSS with the default 256 MB heap.
package searchtest
