package hardeningtest

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/go-whisk/activationstore/internal/activationtest"
	"github.com/go-whisk/activationstore/internal/faultproxy"
	"github.com/go-whisk/activationstore/internal/kafkatest"
	"github.com/go-whisk/activationstore/internal/logtest"
	"github.com/go-whisk/activationstore/kafkastore"
	"github.com/go-whisk/activationstore/kafkastore/persister"
	"github.com/go-whisk/activationstore/primary/memory"
	"github.com/go-whisk/activationstore/store"
)

const (
	publishTimeout = time.Second
	// timeoutMargin covers scheduling under -race on 2 shared cores.
	timeoutMargin = time.Second
)

// checkPublishError asserts err is a clear ErrPublish for topic.
func checkPublishError(t *testing.T, err error, topic string, a *store.Activation) {
	t.Helper()
	if !errors.Is(err, kafkastore.ErrPublish) {
		t.Fatalf("Store with the broker down: %v; want an error matching kafkastore.ErrPublish", err)
	}
	var perr *kafkastore.PublishError
	if !errors.As(err, &perr) || perr.Topic != topic || perr.DocID != a.DocID() {
		t.Fatalf("Store error %#v: want a *kafkastore.PublishError naming topic %q and %q", err, topic, a.DocID())
	}
	msg := err.Error()
	for _, want := range []string{topic, a.DocID(), "check the brokers"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q does not mention %q", msg, want)
		}
	}
}

// timedStore calls s.Store and returns its error and duration.
func timedStore(s store.Store, a *store.Activation) (time.Duration, error) {
	start := time.Now()
	_, err := s.Store(context.Background(), a, store.UserContext{})
	return time.Since(start), err
}

func TestStoreBrokerUnreachable(t *testing.T) {
	leaks := startLeakCheck()
	addr := closedPort(t)
	topic := kafkatest.Topic(t, "completed-hardening")
	mem := memory.New()

	// New creates the topic by default: it must give up within the timeout.
	start := time.Now()
	s, err := kafkastore.New(mem, kafkastore.WithBrokers(addr), kafkastore.WithTopic(topic),
		kafkastore.WithPublishTimeout(publishTimeout))
	newElapsed := time.Since(start)
	if err == nil {
		s.Close()
		t.Fatal("New with topic creation succeeded against a closed port")
	}
	if newElapsed > publishTimeout+timeoutMargin {
		t.Errorf("New failed after %v, want within the publish timeout %v (+%v)", newElapsed, publishTimeout, timeoutMargin)
	}
	if !strings.Contains(err.Error(), addr) || !strings.Contains(err.Error(), "WithTopicCreation(false)") {
		t.Errorf("New error %q: want the brokers named and what to do", err)
	}

	ks, err := kafkastore.New(mem, kafkastore.WithBrokers(addr), kafkastore.WithTopic(topic),
		kafkastore.WithPublishTimeout(publishTimeout), kafkastore.WithTopicCreation(false))
	if err != nil {
		t.Fatalf("New without topic creation must not contact the brokers: %v", err)
	}
	a := activationtest.New("guest")
	storeElapsed, err := timedStore(ks, a)
	checkPublishError(t, err, topic, a)
	if storeElapsed > publishTimeout+timeoutMargin {
		t.Errorf("Store failed after %v, want within the publish timeout %v (+%v)", storeElapsed, publishTimeout, timeoutMargin)
	}
	if _, err := mem.Get(context.Background(), a.Namespace, a.ActivationID, store.UserContext{}); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("record in the primary without fallback: %v", err)
	}

	// A refused connection fails at once: nothing to wait for.
	if storeElapsed > timeoutMargin {
		t.Errorf("Store against a closed port took %v; a refused connection should fail fast", storeElapsed)
	}
	if _, err := ks.Store(context.Background(), activationtest.New("guest"), store.UserContext{}); !errors.Is(err, kafkastore.ErrPublish) {
		t.Errorf("second Store against a closed port: %v, want ErrPublish", err)
	}
	if st := ks.Stats(); st.PublishFailures != 2 {
		t.Errorf("Stats.PublishFailures = %d, want 2", st.PublishFailures)
	}

	// With the fallback the record lands in the primary, readable at once.
	fb, err := kafkastore.New(mem, kafkastore.WithBrokers(addr), kafkastore.WithTopic(topic),
		kafkastore.WithPublishTimeout(publishTimeout), kafkastore.WithTopicCreation(false),
		kafkastore.WithFallbackToPrimary(true))
	if err != nil {
		t.Fatal(err)
	}
	b := activationtest.New("guest")
	fbElapsed, err := timedStore(fb, b)
	if err != nil {
		t.Fatalf("Store with fallback: %v", err)
	}
	if fbElapsed > publishTimeout+timeoutMargin {
		t.Errorf("Store with fallback took %v", fbElapsed)
	}
	if got, err := fb.Get(context.Background(), b.Namespace, b.ActivationID, store.UserContext{}); err != nil || got.ActivationID != b.ActivationID {
		t.Errorf("Get after fallback: %v, %v", got, err)
	}
	if st := fb.Stats(); st.Fallbacks != 1 {
		t.Errorf("Stats.Fallbacks = %d, want 1", st.Fallbacks)
	}

	closeStart := time.Now()
	if err := ks.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if err := fb.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	closeElapsed := time.Since(closeStart)
	before, after := leaks.verify(t, "Stores against a closed port, after Close")
	t.Logf("SUMMARY TestStoreBrokerUnreachable: New failed in %v, Store failed in %v (timeout %v), fallback Store %v, Close %v, goroutines %d before / %d after",
		newElapsed.Round(time.Millisecond), storeElapsed.Round(time.Millisecond), publishTimeout,
		fbElapsed.Round(time.Millisecond), closeElapsed.Round(time.Millisecond), before, after)
}

func TestStoreBrokerDiesMidRun(t *testing.T) {
	leaks := startLeakCheck()
	b, err := kafkatest.New()
	if err != nil {
		t.Fatalf("start kfake: %v", err)
	}
	t.Cleanup(b.Close)
	topic := kafkatest.Topic(t, "completed-hardening")
	mem := memory.New()
	opts := []kafkastore.Option{kafkastore.WithBrokers(b.Addr()), kafkastore.WithTopic(topic),
		kafkastore.WithPublishTimeout(publishTimeout), kafkastore.WithTopicPartitions(2)}
	ks, err := kafkastore.New(mem, opts...)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	fb, err := kafkastore.New(mem, append(opts, kafkastore.WithFallbackToPrimary(true))...)
	if err != nil {
		t.Fatalf("New with fallback: %v", err)
	}
	// Both work while the broker lives, and nothing goes to the primary.
	for _, s := range []*kafkastore.Store{ks, fb} {
		if _, err := timedStore(s, activationtest.New("guest")); err != nil {
			t.Fatalf("Store with the broker up: %v", err)
		}
	}
	if n := mem.Len(); n != 0 {
		t.Fatalf("primary holds %d records before the broker died", n)
	}

	b.Close()
	a := activationtest.New("guest")
	downElapsed, err := timedStore(ks, a)
	checkPublishError(t, err, topic, a)
	if downElapsed > publishTimeout+timeoutMargin {
		t.Errorf("Store with the broker dead failed after %v, want within %v (+%v)", downElapsed, publishTimeout, timeoutMargin)
	}
	// Later calls fail as fast: no call hangs on a connection pool stuck
	// on the dead broker.
	a2 := activationtest.New("guest")
	againElapsed, err := timedStore(ks, a2)
	checkPublishError(t, err, topic, a2)
	if againElapsed > publishTimeout+timeoutMargin {
		t.Errorf("second Store failed after %v", againElapsed)
	}

	c := activationtest.New("guest")
	fbElapsed, err := timedStore(fb, c)
	if err != nil {
		t.Fatalf("Store with fallback, broker dead: %v", err)
	}
	if fbElapsed > publishTimeout+timeoutMargin {
		t.Errorf("Store with fallback took %v", fbElapsed)
	}
	if got, err := fb.Get(context.Background(), c.Namespace, c.ActivationID, store.UserContext{}); err != nil || got.ActivationID != c.ActivationID {
		t.Errorf("Get after fallback: %v, %v", got, err)
	}
	if n := mem.Len(); n != 1 {
		t.Errorf("primary holds %d records, want the 1 that fell back", n)
	}

	// Close may report records of timed-out callers as unacknowledged
	// (true: kafka-go retries them in the background), but it must return
	// within the publish timeout and leave nothing running.
	closeStart := time.Now()
	var closeErrs int
	for _, s := range []*kafkastore.Store{ks, fb} {
		if err := s.Close(); err != nil {
			closeErrs++
			t.Logf("Close: %v", err)
		}
	}
	closeElapsed := time.Since(closeStart)
	if closeElapsed > 2*(publishTimeout+timeoutMargin) {
		t.Errorf("Close of two Stores took %v, want at most the publish timeout each", closeElapsed)
	}
	before, after := leaks.verify(t, "Stores whose broker died, after Close")
	t.Logf("SUMMARY TestStoreBrokerDiesMidRun: Store failed in %v then %v (timeout %v), fallback Store %v, Close of 2 Stores %v (%d returned an error), goroutines %d before / %d after",
		downElapsed.Round(time.Millisecond), againElapsed.Round(time.Millisecond), publishTimeout,
		fbElapsed.Round(time.Millisecond), closeElapsed.Round(time.Millisecond), closeErrs, before, after)
}

// isTimeout reports whether err wraps the context's deadline or a network
// timeout: the transport's read timeout equals the publish timeout, so
// either may fire first.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout()
}

// A broker that accepts connections but never answers: Store gives up at
// the publish timeout, or at the caller's earlier deadline.
func TestStoreBrokerHangs(t *testing.T) {
	leaks := startLeakCheck()
	proxy, err := faultproxy.New(closedPort(t))
	if err != nil {
		t.Fatal(err)
	}
	defer proxy.Close()
	proxy.Stall()
	topic := kafkatest.Topic(t, "completed-hardening")
	ks, err := kafkastore.New(memory.New(), kafkastore.WithBrokers(proxy.Addr()), kafkastore.WithTopic(topic),
		kafkastore.WithPublishTimeout(publishTimeout), kafkastore.WithTopicCreation(false))
	if err != nil {
		t.Fatal(err)
	}
	a := activationtest.New("guest")
	hangElapsed, err := timedStore(ks, a)
	checkPublishError(t, err, topic, a)
	if !isTimeout(err) {
		t.Errorf("Store against a hanging broker: %v; want it to wrap a timeout", err)
	}
	if hangElapsed < publishTimeout/2 || hangElapsed > publishTimeout+timeoutMargin {
		t.Errorf("Store against a hanging broker failed after %v, want about the publish timeout %v", hangElapsed, publishTimeout)
	}

	// A fresh Store (its transport has not yet learnt the broker hangs):
	// the caller's earlier deadline wins over the publish timeout.
	ks2, err := kafkastore.New(memory.New(), kafkastore.WithBrokers(proxy.Addr()), kafkastore.WithTopic(topic),
		kafkastore.WithPublishTimeout(publishTimeout), kafkastore.WithTopicCreation(false))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	start := time.Now()
	_, err = ks2.Store(ctx, activationtest.New("guest"), store.UserContext{})
	ctxElapsed := time.Since(start)
	cancel()
	if !errors.Is(err, kafkastore.ErrPublish) || !isTimeout(err) {
		t.Errorf("Store with a 200ms context: %v; want ErrPublish wrapping a timeout", err)
	}
	if ctxElapsed > 200*time.Millisecond+timeoutMargin {
		t.Errorf("Store with a 200ms context returned after %v", ctxElapsed)
	}
	if st := ks.Stats(); st.PublishFailures != 1 {
		t.Errorf("Stats.PublishFailures = %d, want 1", st.PublishFailures)
	}

	closeStart := time.Now()
	closeErr := errors.Join(ks.Close(), ks2.Close())
	closeElapsed := time.Since(closeStart)
	if closeElapsed > 2*(publishTimeout+timeoutMargin) {
		t.Errorf("Close took %v, want at most the publish timeout", closeElapsed)
	}
	proxy.Close()
	before, after := leaks.verify(t, "Store against a hanging broker, after Close")
	t.Logf("SUMMARY TestStoreBrokerHangs: Store failed in %v (timeout %v), Store with 200ms ctx %v, Close of 2 Stores %v (error: %v), goroutines %d before / %d after",
		hangElapsed.Round(time.Millisecond), publishTimeout, ctxElapsed.Round(time.Millisecond),
		closeElapsed.Round(time.Millisecond), closeErr != nil, before, after)
}

// persisterOptions are short timings for tests.
func persisterOptions(t testing.TB, addr string, logger *slog.Logger, topic string) []persister.Option {
	return []persister.Option{
		kafkastore.WithBrokers(addr),
		kafkastore.WithLogger(logger),
		persister.WithGroupID(kafkatest.Topic(t, "group")),
		persister.WithDeadLetterTopic(kafkatest.Topic(t, "dlq")),
		persister.WithTopicPattern(regexp.MustCompile("^" + regexp.QuoteMeta(topic) + "$")),
		persister.WithGroupTimeouts(3*time.Second, 3*time.Second, 100*time.Millisecond),
		persister.WithTopicRefresh(200 * time.Millisecond),
		persister.WithBatch(500, 4<<20, 5*time.Millisecond),
		persister.WithRetryBackoff(5*time.Millisecond, 100*time.Millisecond),
		persister.WithCommitInterval(100 * time.Millisecond),
		persister.WithDrainTimeout(time.Second),
	}
}

// runUntilCancel runs p; stop cancels it and returns how long Run took to
// return, failing the test when Run returned before stop, returned an
// error, or did not return within limit.
func runUntilCancel(t testing.TB, p *persister.Persister, limit time.Duration) (stop func() time.Duration) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	stopped := false
	stop = func() time.Duration {
		if stopped {
			return 0
		}
		stopped = true
		select {
		case err := <-done:
			cancel()
			t.Errorf("Run returned %v before it was cancelled; it must keep retrying while Kafka is unavailable", err)
			return 0
		default:
		}
		start := time.Now()
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run returned %v after cancel, want nil", err)
			}
		case <-time.After(limit):
			t.Errorf("Run did not return within %v of cancel", limit)
		}
		return time.Since(start)
	}
	t.Cleanup(func() { stop() })
	return stop
}

func TestPersisterBrokerDown(t *testing.T) {
	const runLimit = 5 * time.Second

	t.Run("closed port", func(t *testing.T) {
		leaks := startLeakCheck()
		var logs logtest.Buffer
		p, err := persister.New(memory.New(), persisterOptions(t, closedPort(t), debugLogger(&logs), "completed-x")...)
		if err != nil {
			t.Fatal(err)
		}
		stop := runUntilCancel(t, p, runLimit)
		time.Sleep(500 * time.Millisecond)
		if p.Ready() {
			t.Error("Ready with no broker")
		}
		stopElapsed := stop()
		before, after := leaks.verify(t, "Persister.Run against a closed port, after it returned")
		t.Logf("SUMMARY TestPersisterBrokerDown/closed_port: Run returned %v after cancel, %d log lines, goroutines %d before / %d after",
			stopElapsed.Round(time.Millisecond), logs.Lines(), before, after)
	})

	t.Run("broker dies mid-run", func(t *testing.T) {
		leaks := startLeakCheck()
		b, err := kafkatest.New()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(b.Close)
		topic := kafkatest.Topic(t, "completed-hardening")
		mem := memory.New()
		ks, err := kafkastore.New(mem, kafkastore.WithBrokers(b.Addr()), kafkastore.WithTopic(topic),
			kafkastore.WithTopicPartitions(2), kafkastore.WithPublishTimeout(5*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		a := activationtest.New("guest")
		if _, err := ks.Store(context.Background(), a, store.UserContext{}); err != nil {
			t.Fatal(err)
		}
		var logs logtest.Buffer
		p, err := persister.New(mem, persisterOptions(t, b.Addr(), debugLogger(&logs), topic)...)
		if err != nil {
			t.Fatal(err)
		}
		stop := runUntilCancel(t, p, runLimit)
		deadline := time.Now().Add(20 * time.Second)
		for mem.Len() < 1 {
			if time.Now().After(deadline) {
				t.Fatalf("record not persisted within 20s; persister logs:\n%s", logs.String())
			}
			time.Sleep(20 * time.Millisecond)
		}
		if err := ks.Close(); err != nil {
			t.Errorf("Store Close: %v", err)
		}
		b.Close()
		time.Sleep(500 * time.Millisecond) // the persister notices and retries
		stopElapsed := stop()
		before, after := leaks.verify(t, "Persister.Run whose broker died, after it returned")
		t.Logf("SUMMARY TestPersisterBrokerDown/broker_dies_mid-run: persisted %d before the broker died, Run returned %v after cancel, goroutines %d before / %d after",
			p.Stats().Persisted, stopElapsed.Round(time.Millisecond), before, after)
	})
}
