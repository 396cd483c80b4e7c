package kafkaconn

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/protocol"
	metadataapi "github.com/segmentio/kafka-go/protocol/metadata"
)

// UnmaskConnectError returns the error kafka-go's transport met connecting
// to brokers when err is the BrokerNotAvailable that kafka-go (v0.4.51)
// reports instead for a request it routes to a broker it never reached
// (CreateTopics): a failed SASL login or TLS handshake then names itself
// rather than passing for a broker that is down. Any other err is
// returned as it is.
func UnmaskConnectError(ctx context.Context, transport *kafka.Transport, addr net.Addr, err error) error {
	if !errors.Is(err, kafka.BrokerNotAvailable) {
		return err
	}
	// The transport keeps the error of its last failed discovery and
	// returns it for a metadata request; nil means it did connect.
	_, cause := transport.RoundTrip(ctx, addr, &metadataapi.Request{})
	if cause == nil || errors.Is(cause, kafka.BrokerNotAvailable) {
		return err
	}
	return fmt.Errorf("cannot connect to the brokers: %w", cause)
}

// IsAuthError reports whether err says that the client and the brokers
// did not accept each other's credentials: a failed SASL login, a SASL
// mechanism the brokers do not enable, or a broker certificate the TLS
// configuration does not trust. Retrying will not help until someone
// changes a setting, so these are logged as errors naming the setting.
func IsAuthError(err error) bool {
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

// AuthHint is the advice given with an authentication failure.
const AuthHint = "the brokers refused the client's credentials or the client refused the broker's certificate: check the WithSASL mechanism, user and password, and the WithTLS configuration (its RootCAs must trust the brokers' CA)"

// Retriable reports whether a request that failed with cause may succeed
// when sent again: a broker error Kafka calls retriable, a partition
// without a leader, or a connection that could not be made, broke or hung.
// An authentication failure is not retriable (see IsAuthError).
func Retriable(cause error) bool {
	if cause == nil || IsAuthError(cause) || errors.Is(cause, context.Canceled) {
		return false
	}
	var kerr kafka.Error
	if errors.As(cause, &kerr) {
		return kerr.Temporary() || kerr == kafka.BrokerNotAvailable
	}
	// kafka-go's own metadata shows the partition without a leader: an
	// election in progress (ZooKeeper clusters report it so, for seconds).
	return errors.Is(cause, protocol.ErrNoLeader) || ConnectionFailure(cause)
}

// Permanent reports whether err is a broker's answer that no retry will
// change: a Kafka error that is neither retriable nor an authentication
// failure (which an operator may fix while the client waits). Errors that
// are neither Retriable nor Permanent are the client's own, and worth a
// retry.
func Permanent(err error) bool {
	var kerr kafka.Error
	return errors.As(err, &kerr) && !IsAuthError(err) && !Retriable(err)
}

// ConnectionFailure reports whether cause says that a broker could not be
// reached, or that the connection broke or hung: a broker down, or being
// restarted.
func ConnectionFailure(cause error) bool {
	if IsAuthError(cause) {
		return false
	}
	var nerr net.Error
	var operr *net.OpError
	return errors.Is(cause, kafka.BrokerNotAvailable) ||
		errors.Is(cause, syscall.ECONNREFUSED) || errors.Is(cause, syscall.ECONNRESET) ||
		errors.Is(cause, syscall.EPIPE) || errors.Is(cause, io.EOF) || errors.Is(cause, io.ErrUnexpectedEOF) ||
		errors.Is(cause, net.ErrClosed) || errors.Is(cause, context.DeadlineExceeded) ||
		errors.As(cause, &operr) || errors.As(cause, &nerr) && nerr.Timeout()
}
