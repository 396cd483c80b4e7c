package hardeningtest

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/sasl/scram"

	"github.com/go-whisk/activationstore/internal/activationtest"
	"github.com/go-whisk/activationstore/internal/couchtest"
	"github.com/go-whisk/activationstore/internal/kafkatest"
	"github.com/go-whisk/activationstore/internal/logtest"
	"github.com/go-whisk/activationstore/internal/servicetest"
	"github.com/go-whisk/activationstore/kafkastore"
	"github.com/go-whisk/activationstore/kafkastore/persister"
	"github.com/go-whisk/activationstore/primary/memory"
	"github.com/go-whisk/activationstore/store"
)

// Bounds of the secured-broker tests: generous, for a loaded machine.
const (
	securedPublishTimeout = 10 * time.Second
	// refusalBound is how soon New or Store must give up on credentials
	// the brokers refuse.
	refusalBound = 3 * securedPublishTimeout
	// securedRecords are published through each listener.
	securedRecords = 12
)

// Real Apache Kafka's secured listeners, one cluster for all: over TLS
// (certificates the test generates), SASL/SCRAM-SHA-512, and both
// (SASL_SSL), the Store creates its topic and publishes, a Persister and the
// persister service (a process, configured by environment and a CA file)
// consume every record into their primaries; then wrong credentials and an
// untrusted certificate fail clearly and in bounded time, logging the
// cause and no password.
func TestSecuredBrokers(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Apache Kafka (a JVM); skipped under -short")
	}
	cluster := kafkatest.StartApache(t)
	bin := servicetest.Build(t, false)
	var summary []string
	for _, tc := range []struct {
		name string
		opts []kafkatest.Option
	}{
		{"TLS", []kafkatest.Option{kafkatest.WithTLS()}},
		{"SCRAM-SHA-512", []kafkatest.Option{kafkatest.WithSCRAM()}},
		{"SCRAM-SHA-512 over TLS", []kafkatest.Option{kafkatest.WithSCRAM(), kafkatest.WithTLS()}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			summary = append(summary, tc.name+": "+securedFlow(t, cluster.Listener(tc.opts...), bin))
		})
	}
	t.Run("wrong password", func(t *testing.T) {
		for _, opts := range [][]kafkatest.Option{{kafkatest.WithSCRAM()}, {kafkatest.WithSCRAM(), kafkatest.WithTLS()}} {
			summary = append(summary, "wrong password: "+wrongPasswordLibrary(t, cluster.Listener(opts...)))
		}
		summary = append(summary, "wrong password: "+wrongPasswordService(t, cluster.Listener(kafkatest.WithSCRAM(), kafkatest.WithTLS()), bin))
	})
	t.Run("untrusted certificate", func(t *testing.T) {
		summary = append(summary, "untrusted certificate: "+untrustedCertificate(t, cluster.Listener(kafkatest.WithTLS()), bin))
	})
	t.Logf("SUMMARY TestSecuredBrokers: %s; %s", cluster, strings.Join(summary, "; "))
}

// securedFlow publishes through b's listener with a Store and has a
// Persister and the service persist the records; it returns figures for
// the summary.
func securedFlow(t *testing.T, b *kafkatest.Broker, bin string) string {
	user, password := b.SCRAMCredentials()
	scan := &leakScan{secrets: nonEmpty(password)}
	var logs logtest.Buffer
	logger := debugLogger(&logs)
	ctx := ctxFor(t, 3*time.Minute)
	uc := store.UserContext{}
	topic := kafkatest.Topic(t, "completed-secured")

	// The Store creates the topic and publishes through the listener.
	start := time.Now()
	ks, err := kafkastore.New(memory.New(), append([]kafkastore.Option{clientSecurity(b)}, kafkastore.WithBrokers(b.Addrs()...),
		kafkastore.WithTopic(topic), kafkastore.WithTopicPartitions(2), kafkastore.WithLogger(logger),
		kafkastore.WithPublishTimeout(securedPublishTimeout))...)
	if err != nil {
		t.Fatalf("kafkastore.New on %s: %v", b, err)
	}
	defer ks.Close()
	var ids []string
	for range securedRecords {
		a := activationtest.New("guest")
		if _, err := ks.Store(ctx, a, uc); err != nil {
			t.Fatalf("Store on %s: %v", b, err)
		}
		ids = append(ids, a.ActivationID)
	}
	published := time.Since(start)
	ends, err := b.EndOffsets(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	if n := ends[0] + ends[1]; n != securedRecords {
		t.Errorf("the topic holds %d records after %d Stores", n, securedRecords)
	}

	// A Persister consumes them through the listener.
	mem := memory.New()
	p, err := persister.New(mem, append(persisterOptions(t, b.Addr(), logger, topic), clientSecurity(b))...)
	if err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	stop := runUntilCancel(t, p, 15*time.Second)
	waitUntil(t, 60*time.Second, fmt.Sprintf("the Persister to persist %d records through %s", securedRecords, b), func() bool {
		return countIn(ctx, mem, ids) == len(ids)
	})
	if !p.Ready() {
		t.Error("the Persister persisted every record but is not Ready")
	}
	persisted := time.Since(start)
	stop()

	// The service does the same, configured by its environment.
	base, db := couchtest.URL(t), couchtest.DBName(t)
	start = time.Now()
	svc := servicetest.Start(t, bin, serviceSecurity(t, b, user, password),
		"-couchdb", base, "-db", db, "-brokers", b.Addr(), "-listen", "127.0.0.1:0", "-log-level", "debug",
		"-topic-pattern", "^"+topic+"$", "-group-id", kafkatest.Topic(t, "group"),
		"-dead-letter-topic", kafkatest.Topic(t, "dlq"),
		"-session-timeout", "3s", "-heartbeat", "100ms")
	svc.Eventually(t, 60*time.Second, fmt.Sprintf("the service to persist %d records through %s", securedRecords, b), func() bool {
		return countInCouch(ctx, base, db, ids) == len(ids)
	})
	serviceTook := time.Since(start)
	if status, body := svc.Get(t, "/ready"); status != http.StatusOK {
		t.Errorf("GET /ready after persisting every record: %d %q", status, body)
	}
	if err := svc.Terminate(t, 15*time.Second); err != nil {
		t.Errorf("the service exited with %v after SIGTERM", err)
	}
	out := svc.Logs()
	dumpOnRequest(t, out)
	mechanism := ""
	if m := b.SASL(); m != nil {
		mechanism = m.Name()
	}
	wantStarted := fmt.Sprintf(`"sasl":%q,"tls":%v`, mechanism, b.TLS() != nil)
	if !strings.Contains(out, wantStarted) {
		t.Errorf("the service's start line does not say %s", wantStarted)
	}
	for i, line := range strings.Split(out, "\n") {
		scan.check(t, fmt.Sprintf("service output line %d", i+1), line)
	}
	for i, line := range strings.Split(logs.String(), "\n") {
		scan.check(t, fmt.Sprintf("library log line %d", i+1), line)
	}
	return fmt.Sprintf("%d Stores in %v, all persisted by a Persister in %v and by the service in %v",
		securedRecords, published.Round(time.Millisecond), persisted.Round(time.Millisecond), serviceTook.Round(time.Millisecond))
}

// wrongPasswordLibrary checks that the Store and the Persister, given a
// wrong password for b's SCRAM user, fail clearly and in bounded time.
func wrongPasswordLibrary(t *testing.T, b *kafkatest.Broker) string {
	user, password := b.SCRAMCredentials()
	wrongPassword := "wr0ng-" + password
	wrong, err := scram.Mechanism(scram.SHA512, user, wrongPassword)
	if err != nil {
		t.Fatal(err)
	}
	scan := &leakScan{secrets: []string{password, wrongPassword}}
	var logs logtest.Buffer
	logger := debugLogger(&logs)
	security := []kafkastore.SharedOption{kafkastore.WithSASL(wrong)}
	if c := b.TLS(); c != nil {
		security = append(security, kafkastore.WithTLS(c))
	}
	opts := []kafkastore.Option{kafkastore.WithBrokers(b.Addr()), kafkastore.WithLogger(logger),
		kafkastore.WithPublishTimeout(securedPublishTimeout), kafkastore.Connection(security...)}
	topic := kafkatest.Topic(t, "completed-wrong")
	b.CreateTopic(t, topic, 1, nil)
	wantAuthFailure := func(what string, err error, took time.Duration) {
		t.Helper()
		scan.note(err)
		switch {
		case err == nil:
			t.Fatalf("%s with a wrong password on %s succeeded", what, b)
		case took > refusalBound:
			t.Errorf("%s with a wrong password took %v, more than %v, to fail", what, took, refusalBound)
		case !errors.Is(err, kafka.SASLAuthenticationFailed):
			t.Errorf("%s with a wrong password: %v; want an error matching kafka.SASLAuthenticationFailed", what, err)
		case !strings.Contains(err.Error(), "Authentication failed"):
			t.Errorf("%s with a wrong password: the error does not say authentication failed: %v", what, err)
		}
	}

	// New creates the topic unless told not to: the connection error, not
	// kafka-go's "Broker Not Available", must show.
	start := time.Now()
	s, err := kafkastore.New(memory.New(), append(opts, kafkastore.WithTopic(topic))...)
	newTook := time.Since(start)
	if err == nil {
		s.Close()
	}
	wantAuthFailure("kafkastore.New", err, newTook)

	s, err = kafkastore.New(memory.New(), append(opts, kafkastore.WithTopic(topic), kafkastore.WithTopicCreation(false))...)
	if err != nil {
		t.Fatalf("kafkastore.New without topic creation connects to nothing, yet failed: %v", err)
	}
	start = time.Now()
	_, err = s.Store(ctxFor(t, time.Minute), activationtest.New("guest"), store.UserContext{})
	storeTook := time.Since(start)
	wantAuthFailure("Store", err, storeTook)
	if !errors.Is(err, kafkastore.ErrPublish) {
		t.Errorf("Store with a wrong password: %v; want ErrPublish", err)
	}
	scan.note(s.Close())

	// The Persister keeps retrying, not ready, logging the cause.
	p, err := persister.New(memory.New(), append(persisterOptions(t, b.Addr(), logger, topic), kafkastore.Connection(security...))...)
	if err != nil {
		t.Fatal(err)
	}
	stop := runUntilCancel(t, p, 10*time.Second)
	const cause = "persister cannot authenticate to the Kafka brokers"
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(logs.String(), cause) {
		if p.Ready() {
			t.Fatal("the Persister is Ready with a wrong password")
		}
		if time.Now().After(deadline) {
			t.Fatalf("the Persister did not log %q within 30s; its logs:\n%s", cause, logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(time.Second) // it goes on retrying, still not ready
	if p.Ready() {
		t.Error("the Persister became Ready with a wrong password")
	}
	runTook := stop()

	text := logs.String()
	for _, want := range []string{"SASL Authentication Failed", "WithSASL"} {
		if !strings.Contains(text, want) {
			t.Errorf("the logs never say %q", want)
		}
	}
	for i, line := range strings.Split(text, "\n") {
		scan.check(t, fmt.Sprintf("log line %d", i+1), line)
	}
	scan.checkErrors(t)
	return fmt.Sprintf("%s: New failed in %v, Store in %v, Persister stopped %v after cancel",
		b, newTook.Round(time.Millisecond), storeTook.Round(time.Millisecond), runTook)
}

// wrongPasswordService runs the service with a wrong password for b's
// SCRAM user: it must stay up and not ready, log the cause, never print
// either password, and stop on SIGTERM.
func wrongPasswordService(t *testing.T, b *kafkatest.Broker, bin string) string {
	user, password := b.SCRAMCredentials()
	wrongPassword := "wr0ng-" + password
	scan := &leakScan{secrets: []string{password, wrongPassword}}
	svc, bodies := startRefusedService(t, b, bin, serviceSecurity(t, b, user, wrongPassword))
	for path, body := range bodies {
		scan.check(t, "GET "+path, body)
	}
	out := svc.Logs()
	for _, want := range []string{"SASL Authentication Failed", "invalid credentials"} {
		if !strings.Contains(out, want) {
			t.Errorf("the service's logs never say %q", want)
		}
	}
	for i, line := range strings.Split(out, "\n") {
		scan.check(t, fmt.Sprintf("service output line %d", i+1), line)
	}
	return "service not ready, logged the cause, " + itoa(len(strings.Split(out, "\n"))) + " output lines clean"
}

// untrustedCertificate connects to b's TLS listener trusting the system's
// CAs only, which did not sign the test certificate.
func untrustedCertificate(t *testing.T, b *kafkatest.Broker, bin string) string {
	start := time.Now()
	s, err := kafkastore.New(memory.New(), kafkastore.WithBrokers(b.Addr()), kafkastore.WithTopic(kafkatest.Topic(t, "completed-untrusted")),
		kafkastore.WithTLS(&tls.Config{MinVersion: tls.VersionTLS12}), kafkastore.WithPublishTimeout(securedPublishTimeout))
	took := time.Since(start)
	var unknownCA x509.UnknownAuthorityError
	switch {
	case err == nil:
		s.Close()
		t.Fatalf("kafkastore.New trusting the system's CAs connected to %s, whose certificate the test's own CA signed", b)
	case took > refusalBound:
		t.Errorf("kafkastore.New took %v, more than %v, to fail", took, refusalBound)
	case !errors.As(err, &unknownCA):
		t.Errorf("kafkastore.New: %v; want an error matching x509.UnknownAuthorityError", err)
	}

	svc, _ := startRefusedService(t, b, bin, []string{"PERSISTER_TLS=true"})
	if out := svc.Logs(); !strings.Contains(out, "certificate signed by unknown authority") {
		t.Errorf("the service's logs never say %q", "certificate signed by unknown authority")
	}
	return fmt.Sprintf("New failed in %v (%v); service not ready, logged the cause", took.Round(time.Millisecond), unknownCA)
}

// startRefusedService starts the service on b with env, which b refuses,
// and checks that it stays up and not ready while it logs that it cannot
// authenticate, then stops it with SIGTERM. It returns the bodies of its
// HTTP endpoints, by path, from before it stopped.
func startRefusedService(t *testing.T, b *kafkatest.Broker, bin string, env []string) (*servicetest.Service, map[string]string) {
	t.Helper()
	svc := servicetest.Start(t, bin, env,
		"-couchdb", couchtest.URL(t), "-db", couchtest.DBName(t), "-brokers", b.Addr(),
		"-listen", "127.0.0.1:0", "-log-level", "debug",
		"-group-id", kafkatest.Topic(t, "group"), "-dead-letter-topic", kafkatest.Topic(t, "dlq"))
	const cause = "persister cannot authenticate to the Kafka brokers"
	svc.Eventually(t, 30*time.Second, "the service to log "+cause, func() bool {
		if status, body := svc.Get(t, "/ready"); status != http.StatusServiceUnavailable {
			t.Fatalf("GET /ready on a service the brokers refuse: %d %q, want 503", status, body)
		}
		return strings.Contains(svc.Logs(), cause)
	})
	time.Sleep(time.Second) // it goes on retrying, still not ready
	if status, _ := svc.Get(t, "/ready"); status != http.StatusServiceUnavailable {
		t.Errorf("GET /ready a second after the service logged %q: %d, want 503", cause, status)
	}
	if exited, err := svc.Wait(0); exited {
		t.Fatalf("the service exited (%v); it must wait for valid credentials, not ready", err)
	}
	bodies := map[string]string{}
	for _, path := range []string{"/ready", "/metrics"} {
		_, bodies[path] = svc.Get(t, path)
	}
	if err := svc.Terminate(t, 15*time.Second); err != nil {
		t.Errorf("the service exited with %v after SIGTERM", err)
	}
	dumpOnRequest(t, svc.Logs())
	return svc, bodies
}

// clientSecurity is the Store and Persister setting for b's listener.
func clientSecurity(b *kafkatest.Broker) kafkastore.SharedOption {
	var opts []kafkastore.SharedOption
	if c := b.TLS(); c != nil {
		opts = append(opts, kafkastore.WithTLS(c))
	}
	if m := b.SASL(); m != nil {
		opts = append(opts, kafkastore.WithSASL(m))
	}
	return kafkastore.Connection(opts...)
}

// serviceSecurity is the service's environment for b's listener, with the
// given SASL credentials; the CA goes in a file, as in a deployment.
func serviceSecurity(t *testing.T, b *kafkatest.Broker, user, password string) []string {
	t.Helper()
	var env []string
	if user != "" {
		env = append(env, "PERSISTER_SASL_MECHANISM=SCRAM-SHA-512", "PERSISTER_SASL_USERNAME="+user, "PERSISTER_SASL_PASSWORD="+password)
	}
	if pem := b.CACertPEM(); pem != nil {
		path := filepath.Join(t.TempDir(), "kafka-ca.pem")
		if err := os.WriteFile(path, pem, 0o600); err != nil {
			t.Fatal(err)
		}
		env = append(env, "PERSISTER_TLS_CA_FILE="+path)
	}
	return env
}

// countIn counts the activations of namespace guest with the given ids
// that s holds.
func countIn(ctx context.Context, s store.Store, ids []string) int {
	n := 0
	for _, id := range ids {
		if _, err := s.Get(ctx, "guest", id, store.UserContext{}); err == nil {
			n++
		}
	}
	return n
}

// countInCouch counts the documents of guest activations with the given
// ids in db, stopping at the first missing one.
func countInCouch(ctx context.Context, base, db string, ids []string) int {
	for i, id := range ids {
		status, _, err := couchtest.Do(ctx, http.MethodGet, base, "/"+url.PathEscape(db)+"/"+url.PathEscape("guest/"+id), nil)
		if err != nil || status != http.StatusOK {
			return i
		}
	}
	return len(ids)
}

func nonEmpty(ss ...string) []string {
	var out []string
	for _, s := range ss {
		if s != "" {
			out = append(out, s)
		}
	}
	return out
}
