// Command persister is the deployable persister service: one process (or
// several in one consumer group) beside the controllers and invokers, which
// runs a persister.Persister (package kafkastore/persister). It consumes the
// activation topics and writes the records to the primary: CouchDB, or
// Elasticsearch / OpenSearch indices (OpenWhisk's
// ElasticSearchActivationStore form). Build it with go build; it is a
// program to deploy, not a library example to copy.
//
// Every flag has an environment variable equivalent (flags win):
//
//	-brokers            PERSISTER_BROKERS            Kafka bootstrap brokers, comma-separated (required)
//	-couchdb            COUCHDB_URL                  CouchDB URL, credentials included, or the URLs of several nodes of one cluster, comma-separated (this or -elasticsearch)
//	-db                 COUCHDB_DB                   activations database (whisk_local_activations)
//	-elasticsearch      ELASTICSEARCH_URL            Elasticsearch/OpenSearch URL(s), comma-separated, credentials included (this or -couchdb)
//	-index-pattern      ELASTICSEARCH_INDEX_PATTERN  index pattern, %s the namespace (openwhisk-%s)
//	-elasticsearch-ca-file ELASTICSEARCH_CA_FILE     PEM file of the CAs of an https Elasticsearch URL
//	-group-id           PERSISTER_GROUP_ID           consumer group (activation-persister)
//	-client-id          PERSISTER_CLIENT_ID          Kafka client id, distinct per instance (persister-<host>-<pid>-…)
//	-group-instance-id  PERSISTER_GROUP_INSTANCE_ID  static group membership (KIP-345): this instance's stable, unique name ($POD_NAME; none: dynamic)
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
// A bad flag or variable, a missing -brokers, or not exactly one of -couchdb
// and -elasticsearch, stops the service at once with a non-zero exit. Unreachable servers do not: the
// service starts its HTTP endpoints, then waits for CouchDB (backoff from
// 500 ms doubling to 15 s) and for Kafka (the persister's retry backoff),
// logging each failed attempt as a warning, so that it can start before
// them.
//
// Endpoints: GET /ping answers "pong" while the process runs, waiting
// included; GET /ready answers 200 once CouchDB has answered and the
// persister has joined its consumer group, and while the database still
// answers, 503 otherwise; GET /metrics serves Prometheus metrics (lag per
// partition, persisted, conflicts, retries, dead-lettered, batch latency).
// Logs are JSON on standard error. SIGTERM or SIGINT stops consuming, lets
// the in-flight batch finish without committing anything unpersisted, and
// exits 0; during the wait for the servers it exits 0 at once.
//
// # Replaying dead letters
//
//	persister replay-dead-letters [flags]
//
// copies records from the dead-letter topic back to the topic each came
// from (its dead-letter-source-topic header), or to the topic named by -to,
// with its original key and headers (the dead-letter headers dropped). It
// reads the dead-letter topic directly, in no consumer group, from the
// offsets or times given up to the end offsets it sees at start, and
// publishes with acks=all. Once the cause is fixed, the persister stores
// the copies; an activation already stored is a conflict, so replaying
// twice is harmless. -dry-run prints what would be copied, by reason and
// source topic, and copies nothing. It exits non-zero when a record could
// not be published, saying how many were copied. Flags (-brokers and
// -dead-letter-topic also from the environment, as above):
//
//	-brokers            Kafka bootstrap brokers (required)
//	-dead-letter-topic  the topic to read (activations-dead-letter)
//	-to                 publish every record to this topic (default: its source topic)
//	-from-offset        first offset to copy: N for every partition, or P=N,P=N (default: the oldest)
//	-to-offset          stop before this offset: N, or P=N,P=N (default: the end at start)
//	-since, -until      only records dead-lettered in [since, until), RFC 3339
//	-reason             only records of this reason: invalid or malformed (default: both)
//	-dry-run            count, copy nothing
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
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"regexp"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/segmentio/kafka-go/sasl"
	"github.com/segmentio/kafka-go/sasl/plain"
	"github.com/segmentio/kafka-go/sasl/scram"

	"github.com/go-whisk/activationstore/kafkastore"
	"github.com/go-whisk/activationstore/kafkastore/persister"
	"github.com/go-whisk/activationstore/primary/couchdb"
	"github.com/go-whisk/activationstore/primary/elasticsearch"
	"github.com/go-whisk/activationstore/store"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	switch {
	case err == nil:
	case errors.Is(err, flag.ErrHelp):
		// The flag package printed the usage, as asked.
	default:
		fmt.Fprintln(os.Stderr, "persister:", err)
		os.Exit(1)
	}
}

// run runs the service, or the command args name.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == replayCommand {
		return replay(ctx, args[1:], getenv, stdout, stderr)
	}
	return serve(ctx, args, getenv, stderr)
}

type settings struct {
	brokers, couchURL, db             string
	esURL, indexPattern, esCAFile     string
	groupID, clientID, topicPattern   string
	groupInstanceID                   string
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

// parseFlags parses args into fs after setting each flag named in envs
// from its environment variable, so that flags win and a malformed
// variable is an error, as a malformed flag is.
func parseFlags(fs *flag.FlagSet, args []string, getenv func(string) string, envs map[string]string) error {
	for name, env := range envs {
		v := getenv(env)
		if v == "" {
			continue
		}
		if err := fs.Set(name, v); err != nil { // only numbers, durations and booleans fail: no secret shown
			return fmt.Errorf("%s=%q: %w", env, v, err)
		}
	}
	return fs.Parse(args)
}

// flagEnv names the environment variable of each flag.
var flagEnv = map[string]string{
	"brokers": "PERSISTER_BROKERS", "couchdb": "COUCHDB_URL", "db": "COUCHDB_DB",
	"elasticsearch": "ELASTICSEARCH_URL", "index-pattern": "ELASTICSEARCH_INDEX_PATTERN", "elasticsearch-ca-file": "ELASTICSEARCH_CA_FILE",
	"group-id": "PERSISTER_GROUP_ID", "client-id": "PERSISTER_CLIENT_ID", "group-instance-id": "PERSISTER_GROUP_INSTANCE_ID", "topic-pattern": "PERSISTER_TOPIC_PATTERN",
	"batch-size": "PERSISTER_BATCH_SIZE", "dead-letter-topic": "PERSISTER_DEAD_LETTER_TOPIC",
	"max-in-flight": "PERSISTER_MAX_IN_FLIGHT", "batch-wait": "PERSISTER_BATCH_WAIT",
	"session-timeout": "PERSISTER_SESSION_TIMEOUT", "heartbeat": "PERSISTER_HEARTBEAT",
	"listen": "PERSISTER_LISTEN", "log-level": "PERSISTER_LOG_LEVEL",
	"sasl-mechanism": "PERSISTER_SASL_MECHANISM", "sasl-username": "PERSISTER_SASL_USERNAME",
	"sasl-password-file": "PERSISTER_SASL_PASSWORD_FILE", "tls": "PERSISTER_TLS", "tls-ca-file": "PERSISTER_TLS_CA_FILE",
}

func parse(args []string, getenv func(string) string, stderr io.Writer) (*settings, error) {
	fs := flag.NewFlagSet("persister", flag.ContinueOnError)
	fs.SetOutput(stderr)
	s := &settings{}
	fs.StringVar(&s.brokers, "brokers", "", "Kafka bootstrap brokers, comma-separated [PERSISTER_BROKERS]")
	fs.StringVar(&s.couchURL, "couchdb", "", "CouchDB URL, credentials included; or the URLs of several nodes of one cluster, comma-separated [COUCHDB_URL]")
	fs.StringVar(&s.db, "db", "whisk_local_activations", "activations database [COUCHDB_DB]")
	fs.StringVar(&s.esURL, "elasticsearch", "", "Elasticsearch or OpenSearch URL(s), comma-separated, credentials included [ELASTICSEARCH_URL]")
	fs.StringVar(&s.indexPattern, "index-pattern", elasticsearch.DefaultIndexPattern, "Elasticsearch index pattern, %s the namespace [ELASTICSEARCH_INDEX_PATTERN]")
	fs.StringVar(&s.esCAFile, "elasticsearch-ca-file", "", "PEM file of the CAs of an https Elasticsearch URL [ELASTICSEARCH_CA_FILE]")
	fs.StringVar(&s.groupID, "group-id", "activation-persister", "consumer group [PERSISTER_GROUP_ID]")
	fs.StringVar(&s.clientID, "client-id", "", "Kafka client id, distinct per instance (default persister-<host>-<pid>-…) [PERSISTER_CLIENT_ID]")
	fs.StringVar(&s.groupInstanceID, "group-instance-id", getenv("POD_NAME"), "static consumer group membership: this instance's name, stable across its restarts and unique in the group (default $POD_NAME; empty: a dynamic member) [PERSISTER_GROUP_INSTANCE_ID]")
	fs.StringVar(&s.topicPattern, "topic-pattern", "^completed.*", "topics to follow [PERSISTER_TOPIC_PATTERN]")
	fs.IntVar(&s.batchSize, "batch-size", 500, "records per database write [PERSISTER_BATCH_SIZE]")
	fs.StringVar(&s.deadLetterTopic, "dead-letter-topic", "activations-dead-letter", "topic for poison records [PERSISTER_DEAD_LETTER_TOPIC]")
	fs.Int64Var(&s.maxInFlight, "max-in-flight", 64<<20, "bytes read but not yet persisted, at most [PERSISTER_MAX_IN_FLIGHT]")
	fs.DurationVar(&s.batchWait, "batch-wait", 0, "longest a batch waits to fill while a writer is free [PERSISTER_BATCH_WAIT]")
	fs.DurationVar(&s.session, "session-timeout", 30*time.Second, "consumer group session timeout: how soon a dead instance's partitions move [PERSISTER_SESSION_TIMEOUT]")
	fs.DurationVar(&s.heartbeat, "heartbeat", 3*time.Second, "consumer group heartbeat interval [PERSISTER_HEARTBEAT]")
	fs.StringVar(&s.listen, "listen", ":8080", "HTTP listen address [PERSISTER_LISTEN]")
	fs.StringVar(&s.logLevel, "log-level", "info", "debug, info, warn or error [PERSISTER_LOG_LEVEL]")
	fs.StringVar(&s.saslMechanism, "sasl-mechanism", "", "SASL mechanism: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512; empty: none [PERSISTER_SASL_MECHANISM]")
	fs.StringVar(&s.saslUser, "sasl-username", "", "SASL user [PERSISTER_SASL_USERNAME]")
	passwordFile := fs.String("sasl-password-file", "", "file holding the SASL password; or set PERSISTER_SASL_PASSWORD [PERSISTER_SASL_PASSWORD_FILE]")
	fs.BoolVar(&s.tls, "tls", false, "connect to the brokers over TLS [PERSISTER_TLS]")
	fs.StringVar(&s.tlsCAFile, "tls-ca-file", "", "PEM file of the CAs that sign the brokers' certificates; implies -tls [PERSISTER_TLS_CA_FILE]")
	err := parseFlags(fs, args, getenv, flagEnv)
	if err != nil {
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
	case fs.NArg() > 0:
		return nil, fmt.Errorf("unexpected argument %q (the only command is %s)", fs.Arg(0), replayCommand)
	case s.brokers == "":
		return nil, errors.New("no Kafka brokers: pass -brokers host:port or set PERSISTER_BROKERS")
	case s.couchURL == "" && s.esURL == "":
		return nil, errors.New("no CouchDB: pass -couchdb URL or set COUCHDB_URL (or -elasticsearch URL, ELASTICSEARCH_URL)")
	case s.couchURL != "" && s.esURL != "":
		return nil, errors.New("two primaries: pass either -couchdb (COUCHDB_URL) or -elasticsearch (ELASTICSEARCH_URL), not both")
	case s.batchSize <= 0:
		return nil, fmt.Errorf("-batch-size %d: must be positive", s.batchSize)
	case s.saslMechanism == "" && (s.saslUser != "" || s.saslPassword != ""):
		return nil, errors.New("a SASL user or password without a mechanism: pass -sasl-mechanism or set PERSISTER_SASL_MECHANISM")
	case s.saslMechanism != "" && (s.saslUser == "" || s.saslPassword == ""):
		return nil, errors.New("-sasl-mechanism needs a user and a password: pass -sasl-username and -sasl-password-file, or set PERSISTER_SASL_USERNAME and PERSISTER_SASL_PASSWORD")
	}
	if s.mech, err = s.mechanism(); err != nil {
		return nil, err
	}
	if s.tlsConfig, err = s.newTLSConfig(); err != nil {
		return nil, err
	}
	// Checked here so that a typo fails at once rather than being retried
	// as an unreachable server. The URL is not shown: it holds a password.
	if s.esURL != "" {
		for part := range strings.SplitSeq(s.esURL, ",") {
			if u, err := url.Parse(strings.TrimSpace(part)); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				return nil, errors.New(`-elasticsearch (ELASTICSEARCH_URL) must look like "http://[user:password@]host:port", several separated by commas`)
			}
		}
		return s, nil
	}
	if _, err := couchdb.NodeURLs(s.couchURL); err != nil {
		return nil, fmt.Errorf("-couchdb (COUCHDB_URL): %w", err)
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

// Backoff of the wait for CouchDB at startup.
const (
	startMinBackoff = 500 * time.Millisecond
	startMaxBackoff = 15 * time.Second
)

// startBackoff is the pause after failed attempt n (from 1): doubling from
// startMinBackoff up to startMaxBackoff, ±20% so that a fleet restarted
// together does not knock in step.
func startBackoff(n int) time.Duration {
	d := startMaxBackoff
	if n < 10 {
		d = min(startMinBackoff<<(n-1), startMaxBackoff)
	}
	return time.Duration(float64(d) * (0.8 + 0.4*rand.Float64()))
}

// primary is the store the persister is built with before the database
// answers, so that a bad option fails at once; its backend is set before
// Run, which alone calls its methods.
type primary struct{ backend }

// backend is what both the CouchDB and the Elasticsearch primary are.
type backend interface {
	store.Store
	store.BatchStorer
	Close() error
}

// kind names the chosen primary in logs and /ready answers.
func (s *settings) kind() string {
	if s.esURL != "" {
		return "Elasticsearch"
	}
	return "CouchDB"
}

func serve(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer) error {
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

	opts := []persister.Option{
		kafkastore.WithBrokers(strings.Split(s.brokers, ",")...),
		persister.WithGroupID(s.groupID),
		persister.WithTopicPattern(pattern),
		persister.WithDeadLetterTopic(s.deadLetterTopic),
		persister.WithBatch(s.batchSize, 4<<20, s.batchWait),
		persister.WithGroupTimeouts(s.session, s.session, s.heartbeat),
		persister.WithMaxInFlightBytes(s.maxInFlight),
		persister.WithGroupInstanceID(s.groupInstanceID),
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
	prim := &primary{}
	p, err := persister.New(prim, opts...)
	if err != nil {
		return err
	}

	registry := prometheus.NewRegistry()
	registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), newCollector(p))
	ln, err := net.Listen("tcp", s.listen)
	if err != nil {
		return fmt.Errorf("-listen %s: %w", s.listen, err)
	}
	var couchUp atomic.Bool
	probe := newCouchProbe(s.couchURL, s.db)
	if s.esURL != "" {
		probe = newESProbe(s)
	}
	srv := &http.Server{
		Handler:           routes(p, &couchUp, probe, registry),
		ReadHeaderTimeout: 5 * time.Second,
	}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			logger.Error("http server failed", "error", err)
		}
	}()
	defer func() {
		shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(shutdownCtx)
	}()
	// The service's start, once: the library logs "persister running"
	// when Run starts consuming.
	logger.Info("persister started", "listen", ln.Addr().String(), "group", s.groupID, "groupInstanceId", s.groupInstanceID, "pattern", s.topicPattern,
		"primary", s.kind(), "couchdb", redactedURL(s.couchURL), "db", s.db, "elasticsearch", redactedURLs(s.esURL),
		"indexPattern", s.indexPattern, "sasl", s.saslMechanism, "tls", s.tls)

	var cs backend
	if s.esURL != "" {
		var e *elasticsearch.Store
		if e, err = openElasticsearch(ctx, s, logger); e != nil {
			cs = e
		}
	} else {
		var c *couchdb.Store
		if c, err = openCouchDB(ctx, s, logger); c != nil {
			cs = c
		}
	}
	if err != nil {
		return err
	}
	if cs == nil { // stopped while waiting
		logger.Info("persister stopped before " + s.kind() + " answered")
		return nil
	}
	defer cs.Close()
	prim.backend = cs
	couchUp.Store(true)

	// Run waits for the brokers itself, logging each failed attempt.
	if err := p.Run(ctx); err != nil {
		return err
	}
	st := p.Stats()
	// "persister stopped" is the library's line.
	logger.Info("persister service exiting", "read", st.Read, "persisted", st.Persisted, "conflicts", st.Conflicts,
		"skipped", st.Skipped, "storeSkipped", st.StoreSkipped, "deadLettered", st.DeadLettered, "abandoned", st.Abandoned)
	return nil
}

// openCouchDB opens the database, retrying with backoff until CouchDB
// answers. It returns nil, nil when ctx ends first, and an error only for
// a configuration no retry can fix (an invalid database name).
func openCouchDB(ctx context.Context, s *settings, logger *slog.Logger) (*couchdb.Store, error) {
	for attempt := 1; ; attempt++ {
		cs, err := couchdb.New(ctx, s.couchURL, s.db, couchdb.WithLogger(logger))
		switch {
		case err == nil:
			if attempt > 1 {
				logger.Info("persister reached CouchDB", "db", s.db, "attempts", attempt)
			}
			return cs, nil
		case ctx.Err() != nil:
			return nil, nil
		case errors.Is(err, store.ErrInvalid):
			return nil, fmt.Errorf("-db (COUCHDB_DB): %w", err)
		}
		wait := startBackoff(attempt)
		// The couchdb package keeps credentials out of its errors.
		logger.Warn("persister cannot open the CouchDB database yet; retrying",
			"db", s.db, "attempt", attempt, "retryIn", wait.Round(time.Millisecond).String(), "err", err)
		select {
		case <-ctx.Done():
			return nil, nil
		case <-time.After(wait):
		}
	}
}

// openElasticsearch connects, retrying with backoff until the server
// answers. It returns nil, nil when ctx ends first, and an error only for
// a configuration no retry can fix (a bad index pattern or CA file).
func openElasticsearch(ctx context.Context, s *settings, logger *slog.Logger) (*elasticsearch.Store, error) {
	opts := []elasticsearch.Option{elasticsearch.WithLogger(logger), elasticsearch.WithIndexPattern(s.indexPattern)}
	if s.esCAFile != "" {
		opts = append(opts, elasticsearch.WithCAFile(s.esCAFile))
	}
	for attempt := 1; ; attempt++ {
		es, err := elasticsearch.New(ctx, s.esURL, opts...)
		switch {
		case err == nil:
			if attempt > 1 {
				logger.Info("persister reached Elasticsearch", "attempts", attempt)
			}
			return es, nil
		case ctx.Err() != nil:
			return nil, nil
		case !elasticsearch.IsTransient(err):
			// A bad pattern or CA file, or a refusal (401, 403): the
			// package keeps credentials out of its errors.
			return nil, fmt.Errorf("-elasticsearch: %w", err)
		}
		wait := startBackoff(attempt)
		logger.Warn("persister cannot reach Elasticsearch yet; retrying",
			"attempt", attempt, "retryIn", wait.Round(time.Millisecond).String(), "err", err)
		select {
		case <-ctx.Done():
			return nil, nil
		case <-time.After(wait):
		}
	}
}

// redactedURLs shows comma-separated URLs with their passwords replaced.
func redactedURLs(raw string) string {
	if raw == "" {
		return ""
	}
	var out []string
	for part := range strings.SplitSeq(raw, ",") {
		out = append(out, redactedURL(strings.TrimSpace(part)))
	}
	return strings.Join(out, ",")
}

// redactedURL shows a URL, or the comma-separated URLs of several nodes,
// with the password replaced by "xxxxx".
func redactedURL(raw string) string {
	nodes, err := couchdb.NodeURLs(raw)
	if err != nil {
		return "<unparsable URL>"
	}
	for i, n := range nodes {
		u, err := url.Parse(n)
		if err != nil {
			return "<unparsable URL>"
		}
		if i > 0 {
			u.User = nil // the first URL's, shown once
		}
		nodes[i] = u.Redacted()
	}
	return strings.Join(nodes, ",")
}

// couchProbe tells /ready whether the database still answers on some node
// of CouchDB, with HEAD requests whose errors carry no URL, hence no
// credentials. It asks the node that answered last first.
type couchProbe struct {
	client *http.Client
	urls   []string
	last   atomic.Int64
	what   string // "the database", "the cluster"
	kind   string // "CouchDB", "Elasticsearch"
}

// newESProbe asks the Elasticsearch nodes for GET /.
func newESProbe(s *settings) *couchProbe {
	client := &http.Client{Timeout: 2 * time.Second}
	if s.esCAFile != "" {
		if pem, err := os.ReadFile(s.esCAFile); err == nil {
			pool := x509.NewCertPool()
			pool.AppendCertsFromPEM(pem)
			client.Transport = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}
		}
	}
	p := &couchProbe{client: client, what: "the cluster", kind: "Elasticsearch"}
	for part := range strings.SplitSeq(s.esURL, ",") {
		p.urls = append(p.urls, strings.TrimSuffix(strings.TrimSpace(part), "/")+"/")
	}
	return p
}

func newCouchProbe(rawURL, db string) *couchProbe {
	nodes, err := couchdb.NodeURLs(rawURL) // checked by parse
	if err != nil {
		nodes = []string{rawURL}
	}
	p := &couchProbe{client: &http.Client{Timeout: 2 * time.Second}, what: "the database", kind: "CouchDB"}
	for _, n := range nodes {
		p.urls = append(p.urls, strings.TrimSuffix(n, "/")+"/"+url.PathEscape(db))
	}
	return p
}

func (c *couchProbe) ping(ctx context.Context) error {
	start := int(c.last.Load())
	var first error
	for k := range len(c.urls) {
		i := (start + k) % len(c.urls)
		err := c.pingURL(ctx, c.urls[i])
		if err == nil {
			c.last.Store(int64(i))
			return nil
		}
		if first == nil {
			first = err
		}
	}
	if len(c.urls) > 1 {
		return fmt.Errorf("no node of %d answers: %w", len(c.urls), first)
	}
	return first
}

func (c *couchProbe) pingURL(ctx context.Context, u string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodHead, u, nil)
	if err != nil {
		return errors.New("bad " + c.kind + " URL")
	}
	resp, err := c.client.Do(req) // Basic auth from the URL's user info
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return err
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("HTTP %d for %s", resp.StatusCode, c.what)
	}
	return nil
}

func routes(p *persister.Persister, couchUp *atomic.Bool, probe *couchProbe, registry *prometheus.Registry) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /ping", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "pong")
	})
	mux.HandleFunc("GET /ready", func(w http.ResponseWriter, r *http.Request) {
		if !couchUp.Load() {
			http.Error(w, "not ready: waiting for "+probe.kind, http.StatusServiceUnavailable)
			return
		}
		if !p.Ready() {
			http.Error(w, "not ready: waiting for Kafka: the persister has not joined its consumer group", http.StatusServiceUnavailable)
			return
		}
		if err := probe.ping(r.Context()); err != nil {
			http.Error(w, "not ready: "+probe.kind+" does not answer: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		_, _ = io.WriteString(w, "ready")
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(registry, promhttp.HandlerOpts{}))
	return mux
}
