package kafkastore

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"github.com/segmentio/kafka-go/sasl"
)

// Option configures New (the Store) or NewPersister. One type serves both;
// a constructor rejects an option that does not apply to it, so a
// misplaced option is a startup error rather than a silent no-op.
type Option struct {
	name  string
	scope scope
	apply func(*config) error
}

type scope uint8

const (
	forStore scope = 1 << iota
	forPersister
	forBoth = forStore | forPersister
)

func (s scope) String() string {
	switch s {
	case forStore:
		return "kafkastore.New"
	case forPersister:
		return "kafkastore.NewPersister"
	default:
		return "kafkastore.New and kafkastore.NewPersister"
	}
}

// ErrConfig is matched by every configuration error of New and NewPersister.
var ErrConfig = errors.New("kafkastore: invalid configuration")

func configErr(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrConfig, fmt.Sprintf(format, args...))
}

// config holds every setting; storeConfig and persisterConfig hold those of
// one constructor each.
type config struct {
	brokers  []string
	clientID string
	logger   *slog.Logger
	tls      *tls.Config
	sasl     sasl.Mechanism

	storeConfig
	persisterConfig
}

// applyOptions applies opts for the constructor of scope want.
func applyOptions(c *config, want scope, opts []Option) error {
	for _, o := range opts {
		if o.apply == nil {
			return configErr("zero Option passed to %s; build options with the With… functions", want)
		}
		if o.scope&want == 0 {
			return configErr("%s applies only to %s, not to %s", o.name, o.scope, want)
		}
		if err := o.apply(c); err != nil {
			return fmt.Errorf("%w: %s: %w", ErrConfig, o.name, err)
		}
	}
	if len(c.brokers) == 0 {
		return configErr("no brokers: pass WithBrokers(\"host:port\", …)")
	}
	if c.logger == nil {
		c.logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

func option(name string, s scope, apply func(*config) error) Option {
	return Option{name: name, scope: s, apply: apply}
}

// WithBrokers sets the Kafka bootstrap brokers ("host:port"). Required.
func WithBrokers(addrs ...string) Option {
	return option("WithBrokers", forBoth, func(c *config) error {
		if len(addrs) == 0 {
			return errors.New("no addresses")
		}
		for _, a := range addrs {
			if strings.TrimSpace(a) == "" {
				return errors.New("empty broker address")
			}
		}
		c.brokers = append([]string(nil), addrs...)
		return nil
	})
}

// WithClientID sets the Kafka client id. For persisters it must differ per
// instance so that lag and traffic can be attributed; the default is
// "activationstore" for the store and "persister-<host>-<pid>-<random>" for a persister.
func WithClientID(id string) Option {
	return option("WithClientID", forBoth, func(c *config) error {
		if id == "" {
			return errors.New("empty client id")
		}
		c.clientID = id
		return nil
	})
}

// WithLogger sets the structured logger. The default discards.
func WithLogger(l *slog.Logger) Option {
	return option("WithLogger", forBoth, func(c *config) error {
		if l == nil {
			return errors.New("nil logger")
		}
		c.logger = l
		return nil
	})
}

// WithTLS connects to the brokers over TLS. A broker certificate that
// cfg does not trust fails New (when it creates the topic) and Store with
// the x509 error; a Persister logs "persister cannot authenticate to the
// Kafka brokers" and retries.
func WithTLS(cfg *tls.Config) Option {
	return option("WithTLS", forBoth, func(c *config) error {
		c.tls = cfg
		return nil
	})
}

// WithSASL authenticates to the brokers. The mechanism's secrets never
// appear in logs or errors. A login the brokers refuse fails New (when it
// creates the topic) and Store with an error matching
// kafka.SASLAuthenticationFailed; a Persister logs "persister cannot
// authenticate to the Kafka brokers" with the brokers' reason, stays not
// Ready and retries.
func WithSASL(m sasl.Mechanism) Option {
	return option("WithSASL", forBoth, func(c *config) error {
		if m == nil {
			return errors.New("nil SASL mechanism")
		}
		c.sasl = m
		return nil
	})
}
