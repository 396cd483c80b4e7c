package kafkaconn

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
)

func TestIsAuthError(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{fmt.Errorf("create topic: %w", fmt.Errorf("%w: invalid credentials", kafka.SASLAuthenticationFailed)), true},
		{kafka.UnsupportedSASLMechanism, true},
		{fmt.Errorf("dial: %w", &tls.CertificateVerificationError{Err: x509.UnknownAuthorityError{}}), true},
		{x509.HostnameError{Host: "h"}, true},
		{kafka.BrokerNotAvailable, false},
		{kafka.TopicAuthorizationFailed, false}, // authorization, not authentication
		{errors.New("connection refused"), false},
		{nil, false},
	} {
		if got := IsAuthError(tc.err); got != tc.want {
			t.Errorf("IsAuthError(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}

func TestClassifier(t *testing.T) {
	for _, tc := range []struct {
		err                  error
		retriable, permanent bool
	}{
		{kafka.NotLeaderForPartition, true, false},
		{kafka.BrokerNotAvailable, true, false},
		{fmt.Errorf("create topic: %w", kafka.InvalidReplicationFactor), false, true},
		{kafka.TopicAuthorizationFailed, false, true},
		{kafka.SASLAuthenticationFailed, false, false}, // waits for an operator
		{syscall.ECONNREFUSED, true, false},
		{context.Canceled, false, false},
		{errors.New("something else"), false, false},
	} {
		if got := Retriable(tc.err); got != tc.retriable {
			t.Errorf("Retriable(%v) = %v, want %v", tc.err, got, tc.retriable)
		}
		if got := Permanent(tc.err); got != tc.permanent {
			t.Errorf("Permanent(%v) = %v, want %v", tc.err, got, tc.permanent)
		}
	}
}

func TestBackoffGrowsWithinBounds(t *testing.T) {
	b := Backoff{Min: 10 * time.Millisecond, Max: 100 * time.Millisecond}
	for attempt, ceil := range map[int]time.Duration{1: 10 * time.Millisecond, 2: 20 * time.Millisecond, 4: 80 * time.Millisecond, 5: 100 * time.Millisecond, 40: 100 * time.Millisecond} {
		for range 100 {
			if d := b.Wait(attempt); d < ceil/2 || d > ceil {
				t.Fatalf("Wait(%d) = %v, want within [%v, %v]", attempt, d, ceil/2, ceil)
			}
		}
	}
}
