package couchdb

// WithClock sets the source of the documents' "updated" time.
var WithClock = withClock
