package kafkastore

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"

	"github.com/segmentio/kafka-go"
	metadataapi "github.com/segmentio/kafka-go/protocol/metadata"
)

// unmaskConnectError returns the error kafka-go's transport met connecting
// to brokers when err is the BrokerNotAvailable that kafka-go (v0.4.51)
// reports instead for a request it routes to a broker it never reached
// (CreateTopics): a failed SASL login or TLS handshake then names itself
// rather than passing for a broker that is down. Any other err is
// returned as it is.
func unmaskConnectError(ctx context.Context, transport *kafka.Transport, brokers []string, err error) error {
	if !errors.Is(err, kafka.BrokerNotAvailable) {
		return err
	}
	// The transport keeps the error of its last failed discovery and
	// returns it for a metadata request; nil means it did connect.
	_, cause := transport.RoundTrip(ctx, kafka.TCP(brokers...), &metadataapi.Request{})
	if cause == nil || errors.Is(cause, kafka.BrokerNotAvailable) {
		return err
	}
	return fmt.Errorf("cannot connect to the brokers: %w", cause)
}

// isAuthError reports whether err says that the client and the brokers
// did not accept each other's credentials: a failed SASL login, a SASL
// mechanism the brokers do not enable, or a broker certificate the TLS
// configuration does not trust. Retrying will not help until someone
// changes a setting, so these are logged as errors naming the setting.
func isAuthError(err error) bool {
	var (
		unknownCA   x509.UnknownAuthorityError
		hostname    x509.HostnameError
		invalidCert x509.CertificateInvalidError
		verify      *tls.CertificateVerificationError
	)
	return errors.Is(err, kafka.SASLAuthenticationFailed) ||
		errors.Is(err, kafka.UnsupportedSASLMechanism) ||
		errors.Is(err, kafka.IllegalSASLState) ||
		errors.As(err, &unknownCA) || errors.As(err, &hostname) ||
		errors.As(err, &invalidCert) || errors.As(err, &verify)
}

// authHint is the advice logged with an authentication failure.
const authHint = "the brokers refused the client's credentials or the client refused the broker's certificate: check the WithSASL mechanism, user and password, and the WithTLS configuration (its RootCAs must trust the brokers' CA)"
