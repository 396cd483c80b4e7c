package kafkatest

import "testing"

// SharedApache returns the test binary's shared Apache Kafka broker (see
// the package documentation), on the listener of opts, whatever the
// environment selects: for benchmarks and tests that compare kfake with
// Apache Kafka in one run. Main or Stop stops it.
func SharedApache(t testing.TB, opts ...Option) *Broker {
	t.Helper()
	if o := applyOptions(opts); o.nodes != 0 || o.version != "" {
		t.Fatalf("kafkatest: WithNodes and WithVersion apply to StartApache, not SharedApache")
	}
	c, err := sharedApache()
	if err != nil {
		t.Fatalf("kafkatest: no shared Apache Kafka broker: %v", err)
	}
	b := apacheBroker(t, c, opts, false)
	watchShared(t)
	return b
}

// RunBrokers runs bench as two sub-benchmarks, "kfake" on a new in-process
// broker and "apache" on the binary's shared Apache Kafka broker, so that
// one run gives the figures of both, each with its baselines.
func RunBrokers(b *testing.B, bench func(b *testing.B, broker *Broker)) {
	b.Run("kfake", func(b *testing.B) { bench(b, StartFake(b)) })
	b.Run("apache", func(b *testing.B) { bench(b, SharedApache(b)) })
}
