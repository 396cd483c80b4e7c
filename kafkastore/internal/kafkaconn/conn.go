// Package kafkaconn is what the Store (package kafkastore) and the
// Persister (package kafkastore/persister) share about talking to Kafka:
// the connection settings both take, the transport and dialer built from
// them, the kafka-go logger adapter, topic creation, the classification of
// failed requests and the retry backoff. Each lives here once.
package kafkaconn

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/sasl"
)

// ErrConfig is matched by every configuration error of kafkastore.New and
// persister.New; both packages export it.
var ErrConfig = errors.New("kafkastore: invalid configuration")

// ConfigError returns an error matching ErrConfig.
func ConfigError(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrConfig, fmt.Sprintf(format, args...))
}

// OptionError reports that the option named name refused its value.
func OptionError(name string, err error) error {
	return fmt.Errorf("%w: %s: %w", ErrConfig, name, err)
}

// Config holds the settings both constructors take.
type Config struct {
	Brokers  []string
	ClientID string
	Logger   *slog.Logger
	TLS      *tls.Config
	SASL     sasl.Mechanism
}

// Holder is a constructor's configuration: it holds the shared settings.
// kafkastore's shared options reach them through it, whichever
// constructor they are given to.
type Holder interface{ Conn() *Config }

// Finish checks the settings once every option is applied and fills in the
// defaults: the client id given, and a logger that discards.
func (c *Config) Finish(defaultClientID func() string) error {
	if len(c.Brokers) == 0 {
		return ConfigError("no brokers: pass kafkastore.WithBrokers(\"host:port\", …)")
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.ClientID == "" {
		c.ClientID = defaultClientID()
	}
	return nil
}

// Addr is the bootstrap brokers' address.
func (c *Config) Addr() net.Addr { return kafka.TCP(c.Brokers...) }

// Transport returns a transport (kafka.Client, kafka.Writer) on these
// settings. It refreshes its metadata cache every second: the cache routes
// requests, and a stale one sends them to a partition's former leader.
// The caller sets its Context, which bounds the transport's background
// goroutines.
func (c *Config) Transport() *kafka.Transport {
	return &kafka.Transport{
		ClientID:    c.ClientID,
		TLS:         c.TLS,
		SASL:        c.SASL,
		MetadataTTL: time.Second,
	}
}

// Dialer returns a dialer (kafka.Reader, kafka.Conn) on the same settings
// as Transport: kafka-go's Reader and its Conn API take a Dialer, not a
// Transport.
func (c *Config) Dialer() *kafka.Dialer {
	return &kafka.Dialer{
		ClientID:      c.ClientID,
		Timeout:       10 * time.Second,
		DualStack:     true,
		TLS:           c.TLS,
		SASLMechanism: c.SASL,
	}
}
