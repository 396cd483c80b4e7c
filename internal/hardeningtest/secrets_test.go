package hardeningtest

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go/sasl/plain"
	"github.com/segmentio/kafka-go/sasl/scram"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/go-whisk/activationstore/internal/activationtest"
	"github.com/go-whisk/activationstore/internal/couchtest"
	"github.com/go-whisk/activationstore/internal/faultproxy"
	"github.com/go-whisk/activationstore/internal/kafkatest"
	"github.com/go-whisk/activationstore/internal/logtest"
	"github.com/go-whisk/activationstore/kafkastore"
	"github.com/go-whisk/activationstore/kafkastore/persister"
	"github.com/go-whisk/activationstore/primary/couchdb"
	"github.com/go-whisk/activationstore/store"
)

const (
	kafkaUser      = "alice"
	kafkaPassword  = "s3cr3t-kafka"
	wrongPassword  = "wr0ng-s3cr3t-kafka"
	fakeCouchUser  = "admin"
	fakeCouchPass  = "s3cr3t-couch"
	secretsTimeout = 2 * time.Second
)

// couchCredentials returns a URL with credentials to a proxy in front of
// the test server, and the secrets that must never show. The bundled
// server (PouchDB) ignores credentials, so invented ones are used; a real
// CouchDB named by COUCHDB_URL needs its own, which are then the secrets.
func couchCredentials(t *testing.T) (rawURL string, proxy *faultproxy.Proxy, secrets []string) {
	t.Helper()
	u, err := url.Parse(couchtest.URL(t))
	if err != nil {
		t.Fatal(err)
	}
	user, pass := fakeCouchUser, fakeCouchPass
	if u.User != nil {
		if p, ok := u.User.Password(); ok && p != "" {
			user, pass = u.User.Username(), p
		}
	}
	proxy = faultproxy.Start(t, u.Host)
	withCreds := &url.URL{Scheme: u.Scheme, User: url.UserPassword(user, pass), Host: proxy.Addr(), Path: u.Path}
	return withCreds.String(), proxy, []string{pass, user + ":" + pass, url.UserPassword(user, pass).String()}
}

// leakScan collects texts that must not contain any secret.
type leakScan struct {
	secrets []string
	errs    []error
	texts   int
}

// note records err (nil is ignored) and returns it.
func (l *leakScan) note(err error) error {
	if err != nil {
		l.errs = append(l.errs, err)
	}
	return err
}

// found returns an excerpt around each secret text holds.
func (l *leakScan) found(text string) []string {
	var out []string
	for _, s := range l.secrets {
		if i := strings.Index(text, s); i >= 0 {
			lo, hi := max(0, i-200), min(len(text), i+len(s)+100)
			out = append(out, fmt.Sprintf("secret %q: …%s…", s, text[lo:hi]))
		}
	}
	return out
}

// check fails the test if text holds a secret.
func (l *leakScan) check(t *testing.T, source, text string) {
	t.Helper()
	l.texts++
	for _, f := range l.found(text) {
		t.Errorf("%s leaks the %s", source, f)
	}
}

func (l *leakScan) checkErrors(t *testing.T) {
	t.Helper()
	for _, err := range l.errs {
		for _, format := range []string{"%v", "%+v", "%#v", "%s", "%q"} {
			l.check(t, "error ("+format+")", fmt.Sprintf(format, err))
		}
		l.check(t, "error", err.Error())
		for u := errors.Unwrap(err); u != nil; u = errors.Unwrap(u) {
			l.check(t, "wrapped error", fmt.Sprintf("%+v", u))
		}
	}
}

func waitUntil(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// A full flow and its failure paths, logged at debug level: no password of
// CouchDB or Kafka shows in a log line or an error. It runs on kfake with
// SASL/PLAIN, whose password crosses the wire as it is, and on real Apache
// Kafka with SASL/SCRAM-SHA-512 over TLS.
func TestSecretsNeverLeak(t *testing.T) {
	t.Run("kfake SASL PLAIN", func(t *testing.T) {
		b := kafkatest.StartFake(t, kfake.EnableSASL(), kfake.Superuser("PLAIN", kafkaUser, kafkaPassword))
		secretsNeverLeak(t, b, kafkaCredentials{
			right:          kafkastore.WithSASL(plain.Mechanism{Username: kafkaUser, Password: kafkaPassword}),
			wrong:          kafkastore.WithSASL(plain.Mechanism{Username: kafkaUser, Password: wrongPassword}),
			secrets:        []string{kafkaPassword, wrongPassword},
			publishTimeout: secretsTimeout,
		})
	})
	t.Run("Apache Kafka SASL SCRAM-SHA-512 over TLS", func(t *testing.T) {
		if testing.Short() {
			t.Skip("starts Apache Kafka (a JVM); skipped under -short")
		}
		b := kafkatest.StartApache(t, kafkatest.WithSCRAM(), kafkatest.WithTLS())
		user, password := b.SCRAMCredentials()
		wrong, err := scram.Mechanism(scram.SHA512, user, "wr0ng-"+password)
		if err != nil {
			t.Fatal(err)
		}
		secretsNeverLeak(t, b, kafkaCredentials{
			right:   clientSecurity(b),
			wrong:   kafkastore.Connection(kafkastore.WithSASL(wrong), kafkastore.WithTLS(b.TLS())),
			secrets: []string{password, "wr0ng-" + password},
			// A real broker creates a topic in seconds on a loaded machine.
			publishTimeout: securedPublishTimeout,
		})
	})
}

// kafkaCredentials are the Store and Persister options of a secured
// broker, right and wrong, the passwords they hold, and the Store's
// publish timeout there.
type kafkaCredentials struct {
	right, wrong   kafkastore.SharedOption
	secrets        []string
	publishTimeout time.Duration
}

func secretsNeverLeak(t *testing.T, b *kafkatest.Broker, creds kafkaCredentials) {
	couchURL, proxy, couchSecrets := couchCredentials(t)
	scan := &leakScan{secrets: append(couchSecrets, creds.secrets...)}
	for _, secret := range scan.secrets {
		if len(scan.found(`{"msg":"x","url":"http://`+secret+`@h"}`)) == 0 {
			t.Fatalf("the scan misses %q", secret)
		}
	}
	var logs logtest.Buffer
	logger := debugLogger(&logs)
	ctx := ctxFor(t, 2*time.Minute)
	uc := store.UserContext{}
	db := couchtest.DBName(t)

	// The happy path: New, Store, persister Run, Get, List, Count.
	couch, err := couchdb.New(ctx, couchURL, db, couchdb.WithLogger(logger), couchdb.WithTimeout(secretsTimeout))
	if scan.note(err) != nil {
		t.Fatalf("couchdb.New: %v", err)
	}
	defer couch.Close()
	topic := kafkatest.Topic(t, "completed-secrets")
	// Two Stores, one writing the primary too, to cover both paths.
	var stores []*kafkastore.Store
	for _, inPrimary := range []bool{false, true} {
		ks, err := kafkastore.New(couch, append([]kafkastore.Option{creds.right}, kafkastore.WithBrokers(b.Addr()), kafkastore.WithTopic(topic),
			kafkastore.WithTopicPartitions(2), kafkastore.WithLogger(logger),
			kafkastore.WithPublishTimeout(creds.publishTimeout), kafkastore.WithStoreInPrimary(inPrimary))...)
		if scan.note(err) != nil {
			t.Fatalf("kafkastore.New on %s: %v", b, err)
		}
		defer ks.Close()
		stores = append(stores, ks)
	}
	ks := stores[0]
	var stored []*store.Activation
	for i := range 6 {
		a := activationtest.New("guest")
		if _, err := stores[i%2].Store(ctx, a, uc); scan.note(err) != nil {
			t.Fatalf("Store through SASL: %v", err)
		}
		stored = append(stored, a)
	}
	p, err := persister.New(couch, append(persisterOptions(t, b.Addr(), logger, topic), creds.right)...)
	if scan.note(err) != nil {
		t.Fatal(err)
	}
	stop := runUntilCancel(t, p, 10*time.Second)
	waitUntil(t, 30*time.Second, "6 records persisted through SASL", func() bool {
		n, err := ks.Count(ctx, store.Query{Namespace: "guest"}, uc)
		scan.note(err)
		return n == len(stored)
	})
	for _, a := range stored {
		_, err := ks.Get(ctx, a.Namespace, a.ActivationID, uc)
		if scan.note(err) != nil {
			t.Errorf("Get: %v", err)
		}
	}
	if _, err := ks.List(ctx, store.Query{Namespace: "guest", IncludeDocs: true}, uc); scan.note(err) != nil {
		t.Errorf("List: %v", err)
	}
	happyLines := logs.Lines()

	// CouchDB down: reads fail, the persister retries its writes, New fails.
	proxy.Drop()
	down := activationtest.New("guest")
	if _, err := ks.Store(ctx, down, uc); scan.note(err) != nil {
		t.Fatalf("Store with CouchDB down (Kafka is up): %v", err)
	}
	couchFailures := 0
	for _, err := range []error{
		func() error { _, err := ks.Get(ctx, "guest", stored[0].ActivationID, uc); return err }(),
		func() error { _, err := ks.List(ctx, store.Query{Namespace: "guest"}, uc); return err }(),
		func() error { _, err := ks.Count(ctx, store.Query{Namespace: "guest"}, uc); return err }(),
		ks.Delete(ctx, "guest", stored[0].ActivationID, uc),
		func() error { _, err := couch.Store(ctx, activationtest.New("guest"), uc); return err }(),
		func() error {
			_, err := couch.StoreBatch(ctx, []*store.Activation{activationtest.New("guest")}, uc)
			return err
		}(),
		func() error {
			s, err := couchdb.New(ctx, couchURL, couchtest.DBName(t), couchdb.WithLogger(logger), couchdb.WithTimeout(secretsTimeout))
			if err == nil {
				s.Close()
			}
			return err
		}(),
	} {
		if scan.note(err) != nil {
			couchFailures++
		}
	}
	if couchFailures < 6 {
		t.Errorf("only %d of 7 calls failed with CouchDB down", couchFailures)
	}
	waitUntil(t, 15*time.Second, "the persister to retry against CouchDB down", func() bool { return p.Stats().Retries > 0 })
	if err := proxy.Restore(); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 30*time.Second, "the record published while CouchDB was down to be persisted", func() bool {
		_, err := ks.Get(ctx, down.Namespace, down.ActivationID, uc)
		return err == nil
	})

	// A wrong Kafka password: New, Store and a persister all fail.
	_, err = kafkastore.New(couch, append([]kafkastore.Option{creds.wrong}, kafkastore.WithBrokers(b.Addr()), kafkastore.WithTopic(topic),
		kafkastore.WithLogger(logger), kafkastore.WithPublishTimeout(creds.publishTimeout))...)
	if scan.note(err) == nil {
		t.Error("kafkastore.New with a wrong SASL password succeeded")
	}
	badStore, err := kafkastore.New(couch, append([]kafkastore.Option{creds.wrong}, kafkastore.WithBrokers(b.Addr()), kafkastore.WithTopic(topic),
		kafkastore.WithLogger(logger), kafkastore.WithPublishTimeout(creds.publishTimeout),
		kafkastore.WithTopicCreation(false))...)
	if scan.note(err) != nil {
		t.Fatal(err)
	}
	if _, err := badStore.Store(ctx, activationtest.New("guest"), uc); scan.note(err) == nil {
		t.Error("Store with a wrong SASL password succeeded")
	}
	scan.note(badStore.Close())
	bp, err := persister.New(couch, append(persisterOptions(t, b.Addr(), logger, topic), creds.wrong)...)
	if scan.note(err) != nil {
		t.Fatal(err)
	}
	bctx, cancel := context.WithTimeout(ctx, time.Second)
	scan.note(bp.Run(bctx))
	cancel()

	// The broker dies: Store fails, the persister logs its retries.
	b.Close()
	if _, err := ks.Store(ctx, activationtest.New("guest"), uc); scan.note(err) == nil {
		t.Error("Store with the broker down succeeded")
	}
	time.Sleep(500 * time.Millisecond)
	stop()
	for _, s := range stores {
		scan.note(s.Close())
	}

	if os.Getenv("HARDENING_DUMP") != "" {
		for _, err := range scan.errs {
			t.Logf("error: %v", err)
		}
		t.Logf("logs:\n%s", logs.String())
	}
	text := logs.String()
	for i, line := range strings.Split(text, "\n") {
		scan.check(t, fmt.Sprintf("log line %d", i+1), line)
	}
	scan.checkErrors(t)
	// The capture did see the flow and its failures, at debug level.
	for _, want := range []string{`"level":"DEBUG"`, `"level":"ERROR"`, "kafka-go", "persister"} {
		if !strings.Contains(text, want) {
			t.Errorf("captured logs never contain %q; the scan would prove nothing", want)
		}
	}
	t.Logf("SUMMARY %s: %s: %d log lines scanned (%d on the happy path), %d errors scanned in %d texts, %d secrets checked, CouchDB-down calls failed %d/7, persister retries %d",
		t.Name(), b, logs.Lines(), happyLines, len(scan.errs), scan.texts, len(scan.secrets), couchFailures, p.Stats().Retries)
}
