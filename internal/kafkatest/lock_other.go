//go:build !unix

package kafkatest

// lockFile does not lock where flock is unavailable: run the first test
// binary alone there, so that one resolves the Kafka jars.
func lockFile(string) (unlock func(), err error) { return func() {}, nil }
