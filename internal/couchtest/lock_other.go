//go:build !unix

package couchtest

// lockFile does not lock where flock is unavailable: run the first test
// binary alone there, or "npm ci" in internal/couchtest/server beforehand.
func lockFile(string) (unlock func(), err error) { return func() {}, nil }
