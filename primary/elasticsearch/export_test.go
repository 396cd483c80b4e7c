package elasticsearch

// WithClock sets the documents' "updated" time (tests).
var WithClock = withClock
