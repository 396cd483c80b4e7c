// Command persister runs kafkastore.Persister as a service: it consumes the
// activation topics and writes the records to CouchDB.
//
// Every flag has an environment variable equivalent (flags win):
//
//	-brokers            PERSISTER_BROKERS            Kafka bootstrap brokers, comma-separated (required)
//	-couchdb            COUCHDB_URL                  CouchDB URL, credentials included (required)
//	-db                 COUCHDB_DB                   activations database (whisk_local_activations)
//	-group-id           PERSISTER_GROUP_ID           consumer group (activation-persister)
//	-client-id          PERSISTER_CLIENT_ID          Kafka client id, distinct per instance (persister-<host>-<pid>-…)
//	-topic-pattern      PERSISTER_TOPIC_PATTERN      topics to follow (^completed.*; ^activations$ when logs are inside)
//	-batch-size         PERSISTER_BATCH_SIZE         records per database write (500)
//	-dead-letter-topic  PERSISTER_DEAD_LETTER_TOPIC  where poison records go (activations-dead-letter)
//	-batch-wait         PERSISTER_BATCH_WAIT         longest a batch waits to fill while a writer is free (0: none)
//	-session-timeout    PERSISTER_SESSION_TIMEOUT    group session timeout: how soon a dead instance's partitions move (30s)
//	-heartbeat          PERSISTER_HEARTBEAT          group heartbeat interval (3s)
//	-max-in-flight      PERSISTER_MAX_IN_FLIGHT      bytes read but not yet persisted, at most (64 MiB)
//	-listen             PERSISTER_LISTEN             HTTP address for /ping, /ready, /metrics (:8080)
//	-log-level          PERSISTER_LOG_LEVEL          debug, info, warn or error (info)
//	-sasl-mechanism     PERSISTER_SASL_MECHANISM     PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 (none)
//	-sasl-username      PERSISTER_SASL_USERNAME      SASL user (required with a mechanism)
//	-sasl-password-file PERSISTER_SASL_PASSWORD_FILE file holding the SASL password, or:
//	                    PERSISTER_SASL_PASSWORD      the SASL password (environment only: flags show in ps)
//	-tls                PERSISTER_TLS                connect over TLS, trusting the system's CAs (false)
//	-tls-ca-file        PERSISTER_TLS_CA_FILE        PEM file of the CAs to trust instead; implies -tls
//
// The SASL password is never logged. A failed login or an untrusted broker
// certificate is logged as "persister cannot authenticate to the Kafka
// brokers" and retried; /ready stays 503 meanwhile.
//
// Endpoints: GET /ping answers "pong" while the process runs; GET /ready
// answers 200 once the persister has joined its group and CouchDB answers,
// 503 otherwise; GET /metrics serves Prometheus metrics (lag per partition,
// persisted, conflicts, retries, dead-lettered, batch latency). Logs are JSON
// on standard error. SIGTERM or SIGINT stops consuming, lets the in-flight
// batch finish without committing anything unpersisted, and exits 0.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/segmentio/kafka-go/sasl"
	"github.com/segmentio/kafka-go/sasl/plain"
	"github.com/segmentio/kafka-go/sasl/scram"

	"github.com/go-whisk/activationstore/kafkastore"
	"github.com/go-whisk/activationstore/primary/couchdb"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "persister:", err)
		os.Exit(1)
	}
}

type settings struct {
	brokers, couchURL, db             string
	groupID, clientID, topicPattern   string
	deadLetterTopic, listen, logLevel string
	batchSize                         int
	maxInFlight                       int64
	batchWait, session, heartbeat     time.Duration

	saslMechanism, saslUser string
	saslPassword            string // from the environment or the password file; never logged
	tls                     bool
	tlsCAFile               string

	mech      sasl.Mechanism // nil: no SASL
	tlsConfig *tls.Config    // nil: plaintext
}

func parse(args []string, getenv func(string) string, stderr io.Writer) (*settings, error) {
	fs := flag.NewFlagSet("persister", flag.ContinueOnError)
	fs.SetOutput(stderr)
	env := func(name, def string) string {
		if v := getenv(name); v != "" {
			return v
		}
		return def
	}
	envInt := func(name string, def int64) int64 {
		if v := getenv(name); v != "" {
			if n, err := strconv.ParseInt(v, 10, 64); err == nil {
				return n
			}
		}
		return def
	}
	envBool := func(name string) bool {
		b, _ := strconv.ParseBool(getenv(name))
		return b
	}
	envDuration := func(name string, def time.Duration) time.Duration {
		if v := getenv(name); v != "" {
			if d, err := time.ParseDuration(v); err == nil {
				return d
			}
		}
		return def
	}
	s := &settings{}
	fs.StringVar(&s.brokers, "brokers", env("PERSISTER_BROKERS", ""), "Kafka bootstrap brokers, comma-separated [PERSISTER_BROKERS]")
	fs.StringVar(&s.couchURL, "couchdb", env("COUCHDB_URL", ""), "CouchDB URL, credentials included [COUCHDB_URL]")
	fs.StringVar(&s.db, "db", env("COUCHDB_DB", "whisk_local_activations"), "activations database [COUCHDB_DB]")
	fs.StringVar(&s.groupID, "group-id", env("PERSISTER_GROUP_ID", "activation-persister"), "consumer group [PERSISTER_GROUP_ID]")
	fs.StringVar(&s.clientID, "client-id", env("PERSISTER_CLIENT_ID", ""), "Kafka client id, distinct per instance (default persister-<host>-<pid>-…) [PERSISTER_CLIENT_ID]")
	fs.StringVar(&s.topicPattern, "topic-pattern", env("PERSISTER_TOPIC_PATTERN", "^completed.*"), "topics to follow [PERSISTER_TOPIC_PATTERN]")
	fs.IntVar(&s.batchSize, "batch-size", int(envInt("PERSISTER_BATCH_SIZE", 500)), "records per database write [PERSISTER_BATCH_SIZE]")
	fs.StringVar(&s.deadLetterTopic, "dead-letter-topic", env("PERSISTER_DEAD_LETTER_TOPIC", "activations-dead-letter"), "topic for poison records [PERSISTER_DEAD_LETTER_TOPIC]")
	fs.Int64Var(&s.maxInFlight, "max-in-flight", envInt("PERSISTER_MAX_IN_FLIGHT", 64<<20), "bytes read but not yet persisted, at most [PERSISTER_MAX_IN_FLIGHT]")
	fs.DurationVar(&s.batchWait, "batch-wait", envDuration("PERSISTER_BATCH_WAIT", 0), "longest a batch waits to fill while a writer is free [PERSISTER_BATCH_WAIT]")
	fs.DurationVar(&s.session, "session-timeout", envDuration("PERSISTER_SESSION_TIMEOUT", 30*time.Second), "consumer group session timeout: how soon a dead instance's partitions move [PERSISTER_SESSION_TIMEOUT]")
	fs.DurationVar(&s.heartbeat, "heartbeat", envDuration("PERSISTER_HEARTBEAT", 3*time.Second), "consumer group heartbeat interval [PERSISTER_HEARTBEAT]")
	fs.StringVar(&s.listen, "listen", env("PERSISTER_LISTEN", ":8080"), "HTTP listen address [PERSISTER_LISTEN]")
	fs.StringVar(&s.logLevel, "log-level", env("PERSISTER_LOG_LEVEL", "info"), "debug, info, warn or error [PERSISTER_LOG_LEVEL]")
	fs.StringVar(&s.saslMechanism, "sasl-mechanism", env("PERSISTER_SASL_MECHANISM", ""), "SASL mechanism: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512; empty: none [PERSISTER_SASL_MECHANISM]")
	fs.StringVar(&s.saslUser, "sasl-username", env("PERSISTER_SASL_USERNAME", ""), "SASL user [PERSISTER_SASL_USERNAME]")
	passwordFile := fs.String("sasl-password-file", env("PERSISTER_SASL_PASSWORD_FILE", ""), "file holding the SASL password; or set PERSISTER_SASL_PASSWORD [PERSISTER_SASL_PASSWORD_FILE]")
	fs.BoolVar(&s.tls, "tls", envBool("PERSISTER_TLS"), "connect to the brokers over TLS [PERSISTER_TLS]")
	fs.StringVar(&s.tlsCAFile, "tls-ca-file", env("PERSISTER_TLS_CA_FILE", ""), "PEM file of the CAs that sign the brokers' certificates; implies -tls [PERSISTER_TLS_CA_FILE]")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	s.saslPassword = getenv("PERSISTER_SASL_PASSWORD")
	if *passwordFile != "" {
		b, err := os.ReadFile(*passwordFile)
		if err != nil {
			return nil, fmt.Errorf("-sasl-password-file: %w", err)
		}
		s.saslPassword = strings.TrimRight(string(b), "\r\n")
	}
	if s.tlsCAFile != "" {
		s.tls = true
	}
	switch {
	case s.brokers == "":
		return nil, errors.New("no Kafka brokers: pass -brokers host:port or set PERSISTER_BROKERS")
	case s.couchURL == "":
		return nil, errors.New("no CouchDB: pass -couchdb URL or set COUCHDB_URL")
	case s.batchSize <= 0:
		return nil, fmt.Errorf("-batch-size %d: must be positive", s.batchSize)
	case s.saslMechanism == "" && (s.saslUser != "" || s.saslPassword != ""):
		return nil, errors.New("a SASL user or password without a mechanism: pass -sasl-mechanism or set PERSISTER_SASL_MECHANISM")
	case s.saslMechanism != "" && (s.saslUser == "" || s.saslPassword == ""):
		return nil, errors.New("-sasl-mechanism needs a user and a password: pass -sasl-username and -sasl-password-file, or set PERSISTER_SASL_USERNAME and PERSISTER_SASL_PASSWORD")
	}
	var err error
	if s.mech, err = s.mechanism(); err != nil {
		return nil, err
	}
	if s.tlsConfig, err = s.newTLSConfig(); err != nil {
		return nil, err
	}
	return s, nil
}

// mechanism builds the configured SASL mechanism; nil without one.
func (s *settings) mechanism() (sasl.Mechanism, error) {
	switch strings.ToUpper(s.saslMechanism) {
	case "":
		return nil, nil
	case "PLAIN":
		return plain.Mechanism{Username: s.saslUser, Password: s.saslPassword}, nil
	case "SCRAM-SHA-256":
		return scram.Mechanism(scram.SHA256, s.saslUser, s.saslPassword)
	case "SCRAM-SHA-512":
		return scram.Mechanism(scram.SHA512, s.saslUser, s.saslPassword)
	}
	return nil, fmt.Errorf("-sasl-mechanism %q: want PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512", s.saslMechanism)
}

// newTLSConfig builds the TLS configuration; nil without -tls.
func (s *settings) newTLSConfig() (*tls.Config, error) {
	if !s.tls {
		return nil, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if s.tlsCAFile != "" {
		pem, err := os.ReadFile(s.tlsCAFile)
		if err != nil {
			return nil, fmt.Errorf("-tls-ca-file: %w", err)
		}
		cfg.RootCAs = x509.NewCertPool()
		if !cfg.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("-tls-ca-file %s: no PEM certificate in it", s.tlsCAFile)
		}
	}
	return cfg, nil
}

func run(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer) error {
	s, err := parse(args, getenv, stderr)
	if err != nil {
		return err
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(s.logLevel)); err != nil {
		return fmt.Errorf("-log-level %q: %w", s.logLevel, err)
	}
	logger := slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: level}))
	pattern, err := regexp.Compile(s.topicPattern)
	if err != nil {
		return fmt.Errorf("-topic-pattern: %w", err)
	}

	primary, err := couchdb.New(ctx, s.couchURL, s.db, couchdb.WithLogger(logger))
	if err != nil {
		return fmt.Errorf("open CouchDB database %s: %w", s.db, err)
	}
	defer primary.Close()

	opts := []kafkastore.Option{
		kafkastore.WithBrokers(strings.Split(s.brokers, ",")...),
		kafkastore.WithGroupID(s.groupID),
		kafkastore.WithTopicPattern(pattern),
		kafkastore.WithDeadLetterTopic(s.deadLetterTopic),
		kafkastore.WithBatch(s.batchSize, 4<<20, s.batchWait),
		kafkastore.WithGroupTimeouts(s.session, s.session, s.heartbeat),
		kafkastore.WithMaxInFlightBytes(s.maxInFlight),
		kafkastore.WithLogger(logger),
	}
	if s.clientID != "" {
		opts = append(opts, kafkastore.WithClientID(s.clientID))
	}
	if s.mech != nil {
		opts = append(opts, kafkastore.WithSASL(s.mech))
	}
	if s.tlsConfig != nil {
		opts = append(opts, kafkastore.WithTLS(s.tlsConfig))
	}
	p, err := kafkastore.NewPersister(primary, opts...)
	if err != nil {
		return err
	}

	registry := prometheus.NewRegistry()
	registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), newCollector(p))
	ln, err := net.Listen("tcp", s.listen)
	if err != nil {
		return fmt.Errorf("-listen %s: %w", s.listen, err)
	}
	srv := &http.Server{Handler: routes(p, primary, registry), ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			logger.Error("http server failed", "error", err)
		}
	}()
	logger.Info("persister started", "listen", ln.Addr().String(), "group", s.groupID, "pattern", s.topicPattern, "db", s.db,
		"sasl", s.saslMechanism, "tls", s.tls)

	runErr := p.Run(ctx)
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = srv.Shutdown(shutdownCtx)
	if runErr != nil && !errors.Is(runErr, context.Canceled) {
		return runErr
	}
	st := p.Stats()
	logger.Info("persister stopped", "persisted", st.Persisted, "conflicts", st.Conflicts, "deadLettered", st.DeadLettered)
	return nil
}

// pinger is a primary that can tell whether its database answers.
type pinger interface {
	Ping(ctx context.Context) error
}

func routes(p *kafkastore.Persister, primary any, registry *prometheus.Registry) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /ping", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "pong")
	})
	mux.HandleFunc("GET /ready", func(w http.ResponseWriter, r *http.Request) {
		if !p.Ready() {
			http.Error(w, "not ready: the persister has not joined its consumer group", http.StatusServiceUnavailable)
			return
		}
		if pg, ok := primary.(pinger); ok {
			ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
			defer cancel()
			if err := pg.Ping(ctx); err != nil {
				http.Error(w, "not ready: the primary store does not answer: "+err.Error(), http.StatusServiceUnavailable)
				return
			}
		}
		_, _ = io.WriteString(w, "ready")
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(registry, promhttp.HandlerOpts{}))
	return mux
}
