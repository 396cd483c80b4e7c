package kafkastore

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"github.com/segmentio/kafka-go/sasl"

	"github.com/go-whisk/activationstore/kafkastore/internal/kafkaconn"
)

// Option configures New. The Persister's options (package
// kafkastore/persister) are of another type: passing one to New does not
// compile. The settings both take are SharedOptions.
type Option interface {
	applyStore(*config) error
}

// SharedOption is a setting both the Store and the Persister take: the
// brokers, the client id, the logger, TLS and SASL. It is an Option and a
// persister.Option, declared once here.
type SharedOption struct {
	name  string
	apply func(*kafkaconn.Config) error
}

func (o SharedOption) applyStore(c *config) error { return o.ApplyPersister(c) }

// ApplyPersister applies the setting for persister.New. Its parameter
// type is internal to this module, so that only this module's options
// implement persister.Option.
func (o SharedOption) ApplyPersister(h kafkaconn.Holder) error {
	if o.apply == nil {
		return kafkaconn.ConfigError("zero SharedOption; build options with the With… functions")
	}
	if err := o.apply(h.Conn()); err != nil {
		return kafkaconn.OptionError(o.name, err)
	}
	return nil
}

func shared(name string, apply func(*kafkaconn.Config) error) SharedOption {
	return SharedOption{name: name, apply: apply}
}

// storeOption is an option of New only.
type storeOption struct {
	name  string
	apply func(*storeConfig) error
}

func (o storeOption) applyStore(c *config) error {
	if o.apply == nil {
		return kafkaconn.ConfigError("zero Option passed to New; build options with the With… functions")
	}
	if err := o.apply(&c.storeConfig); err != nil {
		return kafkaconn.OptionError(o.name, err)
	}
	return nil
}

func option(name string, apply func(*storeConfig) error) Option {
	return storeOption{name: name, apply: apply}
}

// ErrConfig is matched by every configuration error of New and of
// persister.New.
var ErrConfig = kafkaconn.ErrConfig

func configErr(format string, args ...any) error { return kafkaconn.ConfigError(format, args...) }

// config holds every setting of New.
type config struct {
	conn kafkaconn.Config
	storeConfig
}

func (c *config) Conn() *kafkaconn.Config { return &c.conn }

func applyOptions(c *config, opts []Option) error {
	for _, o := range opts {
		if o == nil {
			return configErr("nil Option passed to New")
		}
		if err := o.applyStore(c); err != nil {
			return err
		}
	}
	return c.conn.Finish(func() string { return defaultStoreClientID })
}

// WithBrokers sets the Kafka bootstrap brokers ("host:port"). Required, by
// New and by persister.New.
func WithBrokers(addrs ...string) SharedOption {
	return shared("WithBrokers", func(c *kafkaconn.Config) error {
		if len(addrs) == 0 {
			return errors.New("no addresses")
		}
		for _, a := range addrs {
			if strings.TrimSpace(a) == "" {
				return errors.New("empty broker address")
			}
		}
		c.Brokers = append([]string(nil), addrs...)
		return nil
	})
}

// WithClientID sets the Kafka client id. For persisters it must differ per
// instance so that lag and traffic can be attributed; the default is
// "activationstore" for the Store and "persister-<host>-<pid>-<random>"
// for a Persister.
func WithClientID(id string) SharedOption {
	return shared("WithClientID", func(c *kafkaconn.Config) error {
		if id == "" {
			return errors.New("empty client id")
		}
		c.ClientID = id
		return nil
	})
}

// WithLogger sets the structured logger. The default discards.
func WithLogger(l *slog.Logger) SharedOption {
	return shared("WithLogger", func(c *kafkaconn.Config) error {
		if l == nil {
			return errors.New("nil logger")
		}
		c.Logger = l
		return nil
	})
}

// WithTLS connects to the brokers over TLS. A broker certificate that
// cfg does not trust fails New (when it creates the topic) and Store with
// the x509 error; a Persister logs "persister cannot authenticate to the
// Kafka brokers" and retries.
func WithTLS(cfg *tls.Config) SharedOption {
	return shared("WithTLS", func(c *kafkaconn.Config) error {
		c.TLS = cfg
		return nil
	})
}

// WithSASL authenticates to the brokers. The mechanism's secrets never
// appear in logs or errors. A login the brokers refuse fails New (when it
// creates the topic) and Store with an error matching
// kafka.SASLAuthenticationFailed; a Persister logs "persister cannot
// authenticate to the Kafka brokers" with the brokers' reason, stays not
// Ready and retries.
func WithSASL(m sasl.Mechanism) SharedOption {
	return shared("WithSASL", func(c *kafkaconn.Config) error {
		if m == nil {
			return errors.New("nil SASL mechanism")
		}
		c.SASL = m
		return nil
	})
}

// Connection bundles shared settings into one, so that a single value
// configures the Store and the Persister alike:
//
//	conn := kafkastore.Connection(kafkastore.WithBrokers(addrs...), kafkastore.WithTLS(cfg))
//	s, err := kafkastore.New(primary, conn, kafkastore.WithTopic("completed-others"))
//	p, err := persister.New(primary, conn, persister.WithGroupID("activation-persister"))
func Connection(opts ...SharedOption) SharedOption {
	opts = append([]SharedOption(nil), opts...)
	return shared("Connection", func(c *kafkaconn.Config) error {
		for _, o := range opts {
			if o.apply == nil {
				return errors.New("zero SharedOption; build options with the With… functions")
			}
			if err := o.apply(c); err != nil {
				return fmt.Errorf("%s: %w", o.name, err)
			}
		}
		return nil
	})
}
