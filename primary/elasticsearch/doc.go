// Package elasticsearch is a store.Store that keeps activations in
// Elasticsearch (6.8, 7.x) or OpenSearch (1.x, 2.x) indices in the form of
// OpenWhisk's ElasticSearchActivationStore, so that it can share indices
// with a Scala OpenWhisk whose db_activation_backend is ElasticSearch, and
// answer the average-duration query of OpenWhisk's scheduler
// (ElasticSearchDurationChecker) through store.DurationStater.
//
// # Documents and indices
//
// A namespace's activations live in the index OpenWhisk names: the index
// pattern (default "openwhisk-%s", [WithIndexPattern]) with %s replaced by
// the namespace's first segment, lowercased. The document id is OpenWhisk's
// "<namespace>/<activationId>", the type "_doc" (Elasticsearch 6), and the
// source is the CouchDB document without "_id" plus "path" (binding +
// "/" + name, else the path annotation, else namespace/name:
// codec.ElasticsearchPath), "@timestamp" (the start, as
// java.time.Instant.toString writes it), the annotations as an object and
// response.result as a JSON string. Reads restore the annotations and the
// result as OpenWhisk's restoreAnnotations and restoreResponse do.
//
// [New] reads the server's version once (GET /) and installs a legacy
// index template for the pattern ([WithIndexTemplate]) that sets the shards
// and replicas ([WithShards]; Elasticsearch 6 would otherwise make 5
// shards) and maps the queried fields as keyword fields with a .keyword
// sub-field, the names dynamic mapping gives them, so that one query
// answers indices made by this package and indices a Scala OpenWhisk made
// by dynamic mapping alike. Requests go through opensearch-go's client with
// this package's own request and reply types: its typed API cannot decode
// Elasticsearch 6 replies, and Elasticsearch 6 needs "_type" in _bulk
// action lines that OpenSearch 2 refuses.
//
// [Store.StoreBatch] writes a batch with one _bulk request of "create"
// actions; each record has its own outcome (see [Store.StoreBatch]).
//
// # Differences from OpenWhisk
//
// Where OpenWhisk's queries are wrong or lossy, this package is exact, and
// says so here:
//
//   - Names: OpenWhisk matches the path with match_phrase on an analysed
//     field, so that guest/hello also finds guest/hello-world (and
//     guest/hello.x, …). Here the path must equal namespace + "/" + name
//     (a term query on path.keyword). In indices of dynamic mapping, a
//     value over 256 characters is not in .keyword (ignore_above): only
//     for those documents the phrase match stands in.
//   - Namespaces: OpenWhisk matches the namespace with match_phrase, and
//     does not filter it at all in name queries, so activations of
//     "Guest" (which share the index of "guest") or of "guest/pkg" whose
//     path names guest/... show up in the lists of "guest". Here every
//     query filters the namespace exactly; store.FilterViewElasticSearch
//     and memory.WithFilterView name these semantics.
//   - Writes create and never overwrite: a record whose document exists is
//     store.ErrConflict, as the store contract and the CouchDB store say
//     (OpenWhisk's "index" action overwrites).
//   - Order: newest first as OpenWhisk, and records with equal starts in
//     descending activation id (OpenWhisk leaves ties unordered), so pages
//     never repeat or skip one. Deep pages (skip + limit over 10,000, or
//     no limit) walk the index with search_after instead of failing at the
//     result window; a Query without Upto has no upper bound (OpenWhisk's
//     is now + 100 years).
//   - Reads see every write that returned ([WithRefreshOnRead]): List,
//     Count and DurationStats refresh the index first. OpenWhisk does not.
//   - Delete deletes the document by id instead of _delete_by_query (which
//     needs the reindex module), with the same outcome.
//   - Results: a result that is a JSON scalar or null is stored as
//     OpenWhisk stores it (a string), and read back as that scalar where
//     OpenWhisk drops it. Annotations: when the object form loses something
//     (a repeated key, an init or encryption member), the exact array form
//     is also written, as the JSON string "annotationsArray", and read
//     back; OpenWhisk's reader ignores it.
//   - Index names: a space in the namespace, which an index name cannot
//     hold (OpenWhisk's write fails), becomes "+", which no namespace holds;
//     a namespace whose index name would exceed 255 bytes is
//     store.ErrInvalid. Uppercase is lowered as in OpenWhisk: "Guest" and
//     "guest" share an index, told apart by the namespace filter.
//   - Duration statistics: OpenWhisk's scheduler matches path.keyword
//     against the action's name, or, through a binding, analysed matches on
//     annotations.binding and name, over the whole index and @timestamp.
//     Here both are the exact path (binding + "/" + name is the path of
//     such activations) within the namespace, and the window bounds start,
//     the value @timestamp is written from. This package's template
//     indexes annotations.binding as dynamic mapping types a string, so a
//     Scala scheduler's queries find the same activations in its indices;
//     every other annotation is left unindexed.
//   - Indices of dynamic mapping (OpenWhisk's) give each annotation key the
//     type of its first value; a later record with another type for the
//     key is refused by the server, and its Store fails with
//     store.ErrInvalid (OpenWhisk's write fails the same way). This
//     package's template indexes only the binding annotation, and the
//     codec keeps a binding that is not a scalar out of the indexed
//     object, so no annotation makes the server refuse a document.
//
// # Errors
//
// store.ErrNotFound, store.ErrConflict and store.ErrInvalid are matched with
// errors.Is. Failures worth retrying (429, 5xx, no answer) are a
// [*TransientError] ([IsTransient]). Credentials given in the URL or with
// [WithBasicAuth] are sent as Basic auth and never appear in an error or a
// log.
package elasticsearch
