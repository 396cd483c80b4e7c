package elasticsearch

// WithClock sets the documents' "updated" time (tests).
var WithClock = withClock

// EncodeDocument is the document written for a (benchmarks' raw _bulk baseline).
var EncodeDocument = encodeDocument
