package persister

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/go-whisk/activationstore/internal/kafkatest"
	"github.com/go-whisk/activationstore/internal/logtest"
	"github.com/go-whisk/activationstore/kafkastore"
	"github.com/go-whisk/activationstore/primary/memory"
)

// A broker certificate the client does not trust is named as such by New,
// not as kafka-go's "Broker Not Available", and a Persister logs it as an
// authentication failure, stays not ready and stops when cancelled. A
// wrong SASL password is tested on Apache Kafka, in internal/hardeningtest
// (TestSecuredBrokers): kfake closes the connection on a failed login
// where Kafka answers with SASL_AUTHENTICATION_FAILED and the reason.
func TestUntrustedCertificateIsNamed(t *testing.T) {
	b := kafkatest.Start(t, kafkatest.WithTLS())
	untrusted := kafkastore.WithTLS(&tls.Config{MinVersion: tls.VersionTLS12}) // the system's CAs only
	s, err := kafkastore.New(memory.New(), kafkastore.WithBrokers(b.Addrs()...), kafkastore.WithTopic(kafkatest.Topic(t, "completed")),
		kafkastore.WithPublishTimeout(10*time.Second), untrusted)
	if err == nil {
		s.Close()
	}
	var unknownCA x509.UnknownAuthorityError
	if !errors.As(err, &unknownCA) || strings.Contains(fmt.Sprint(err), "Broker Not Available") {
		t.Errorf("New trusting the system's CAs only: %v; want x509.UnknownAuthorityError, not Broker Not Available", err)
	}

	var logs logtest.Buffer
	p, err := New(memory.New(), kafkastore.WithBrokers(b.Addrs()...), untrusted,
		kafkastore.WithLogger(slog.New(slog.NewJSONHandler(&logs, nil))),
		WithGroupID(kafkatest.Topic(t, "group")), WithDeadLetterTopic(kafkatest.Topic(t, "dlq")),
		WithRetryBackoff(5*time.Millisecond, 100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	const cause = "persister cannot authenticate to the Kafka brokers"
	for deadline := time.Now().Add(30 * time.Second); !strings.Contains(logs.String(), cause); {
		if p.Ready() || time.Now().After(deadline) {
			t.Fatalf("want the persister not ready, logging %q; ready %v, logs:\n%s", cause, p.Ready(), logs.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if text := logs.String(); !strings.Contains(text, `"level":"ERROR"`) || !strings.Contains(text, "certificate signed by unknown authority") {
		t.Errorf("the failure is not logged at error level with its reason:\n%s", text)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run returned %v after cancel, want nil", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return within 10s of cancel")
	}
}
