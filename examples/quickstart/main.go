// Command quickstart shows activationstore end to end in one process.
//
//	go run ./examples/quickstart
//
// By default it starts an embedded Kafka broker (franz-go's kfake) and an
// in-memory primary store; -brokers and -couchdb (or -elasticsearch) use
// real ones. An
// invoker-like producer completes N activations: blocking results are acked
// on "completed0" (the persister stores them from the ack), non-blocking
// ones are acked with a completion message and published through
// kafkastore.Store to "completed-others", and a controller records trigger
// and sequence activations through the same Store. A persister consumes
// both topics into the primary. At the end every activation is read back
// through Get, List and Count; the exit status is non-zero if any is missing.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/go-whisk/activationstore/examples/controller"
	"github.com/go-whisk/activationstore/examples/invoker"
	"github.com/go-whisk/activationstore/internal/kafkatest"
	"github.com/go-whisk/activationstore/kafkastore"
	"github.com/go-whisk/activationstore/kafkastore/persister"
	"github.com/go-whisk/activationstore/primary/couchdb"
	"github.com/go-whisk/activationstore/primary/elasticsearch"
	"github.com/go-whisk/activationstore/primary/memory"
	"github.com/go-whisk/activationstore/store"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "quickstart:", err)
		os.Exit(1)
	}
}

type options struct {
	n, workers            int
	brokers, couchURL, db string
	esURL, indexPattern   string
	timeout               time.Duration
	verbose               bool
	spoolDir              string
	spoolMaxBytes         int64
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("quickstart", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o options
	fs.IntVar(&o.n, "n", 20_000, "activations to produce")
	fs.IntVar(&o.workers, "workers", 64, "concurrent producers")
	fs.StringVar(&o.brokers, "brokers", "", "Kafka brokers host:port,… (default: an embedded broker)")
	fs.StringVar(&o.couchURL, "couchdb", "", "CouchDB URL (default: an in-memory primary)")
	fs.StringVar(&o.db, "db", "", "CouchDB database (default: quickstart_<time>)")
	fs.StringVar(&o.esURL, "elasticsearch", "", "Elasticsearch/OpenSearch URL(s), comma-separated (instead of -couchdb)")
	fs.StringVar(&o.indexPattern, "index-pattern", "", "Elasticsearch index pattern (default: quickstart-<time>-%s)")
	fs.DurationVar(&o.timeout, "timeout", 2*time.Minute, "give up waiting for the persister after this long")
	fs.BoolVar(&o.verbose, "v", false, "log the library's info messages")
	fs.StringVar(&o.spoolDir, "spool-dir", "", "spool Stores and acks in this directory before Kafka (kafkastore.WithSpool); default: no spool")
	fs.Int64Var(&o.spoolMaxBytes, "spool-max-bytes", kafkastore.DefaultSpoolMaxBytes, "bound of the spool's disk use (kafkastore.WithSpoolMaxBytes)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if o.n < 1 || o.workers < 1 {
		return errors.New("-n and -workers must be positive")
	}
	if o.couchURL != "" && o.esURL != "" {
		return errors.New("pass either -couchdb or -elasticsearch, not both")
	}
	level := slog.LevelWarn
	if o.verbose {
		level = slog.LevelInfo
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))

	brokers := strings.Split(o.brokers, ",")
	if o.brokers == "" {
		b, err := kafkatest.New()
		if err != nil {
			return fmt.Errorf("start the embedded Kafka broker: %w", err)
		}
		defer b.Close()
		brokers = b.Addrs()
		fmt.Fprintf(stdout, "embedded Kafka broker on %s\n", brokers[0])
	}
	primary, describe, closePrimary, err := openPrimary(ctx, o, logger)
	if err != nil {
		return err
	}
	defer closePrimary()
	fmt.Fprintf(stdout, "primary store: %s\n", describe)

	// The controller's ack topic (one partition, as OpenWhisk creates it)
	// and the Store's topic. On a real cluster the records of earlier runs
	// stay on the topics, and a new consumer group starts from the earliest
	// offset: each run gets topics of its own there, so that it persists
	// and counts only its own activations.
	suffix := fmt.Sprint(time.Now().UnixNano())
	ctlIndex, othersTopic := 0, kafkastore.DefaultTopic
	if o.brokers != "" {
		ctlIndex = int(time.Now().UnixMilli() % 1_000_000_000)
		othersTopic = fmt.Sprintf("%s-%d", kafkastore.DefaultTopic, ctlIndex)
	}
	ackTopic := invoker.AckTopic(ctlIndex)
	fmt.Fprintf(stdout, "topics: %s (acks), %s (Store)\n", ackTopic, othersTopic)
	storeOpts := []kafkastore.Option{
		kafkastore.WithBrokers(brokers...),
		kafkastore.WithTopic(othersTopic),
		kafkastore.WithLogger(logger),
	}
	if o.spoolDir != "" {
		storeOpts = append(storeOpts, kafkastore.WithSpool(o.spoolDir, kafkastore.WithSpoolMaxBytes(o.spoolMaxBytes)))
		fmt.Fprintf(stdout, "spool: %s\n", o.spoolDir)
	}
	ks, err := kafkastore.New(primary, storeOpts...)
	if err != nil {
		return err
	}
	defer ks.Close()
	// The Store publishes the invoker's acks too (creating the ack topic
	// with one partition, as OpenWhisk's controller does), through the
	// spool when there is one.
	inv, err := invoker.New(0, invoker.WithActivationStore(ks), invoker.WithAckPublisher(ks), invoker.WithLogger(logger))
	if err != nil {
		return err
	}
	ctl, err := controller.New(controller.WithActivationStore(ks), controller.WithLogger(logger))
	if err != nil {
		return err
	}
	p, err := persister.New(primary,
		kafkastore.WithBrokers(brokers...),
		persister.WithGroupID("quickstart-"+suffix),
		persister.WithTopicPattern(regexp.MustCompile(`^(`+regexp.QuoteMeta(ackTopic)+`|`+regexp.QuoteMeta(othersTopic)+`)$`)),
		persister.WithTopicRefresh(500*time.Millisecond),
		persister.WithGroupTimeouts(10*time.Second, 10*time.Second, time.Second),
		kafkastore.WithLogger(logger))
	if err != nil {
		return err
	}
	runCtx, cancelRun := context.WithCancel(ctx)
	defer cancelRun()
	runErr := make(chan error, 1)
	go func() { runErr <- p.Run(runCtx) }()

	w := newWorkload(o.n, inv, ctl, ctlIndex)
	begin := time.Now()
	progress := startProgress(stdout, w, p, begin)
	if err := w.produce(ctx, o.workers); err != nil {
		progress.stop()
		return err
	}
	produced := time.Since(begin)

	deadline := time.After(o.timeout)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for persistedOf(p) < int64(o.n) {
		select {
		case <-deadline:
			progress.stop()
			return fmt.Errorf("after %v the persister has stored %d of %d activations", o.timeout, persistedOf(p), o.n)
		case err := <-runErr:
			progress.stop()
			return fmt.Errorf("the persister stopped: %w", err)
		case <-ctx.Done():
			progress.stop()
			return ctx.Err()
		case <-tick.C:
		}
	}
	drained := time.Since(begin)
	progress.stop()
	cancelRun()
	if err := <-runErr; err != nil && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("the persister stopped: %w", err)
	}

	missing, err := w.verify(ctx, ks)
	st, ps := ks.Stats(), p.Stats()
	lat := w.latencies()
	fmt.Fprintf(stdout, "\nsummary\n")
	fmt.Fprintf(stdout, "  activations     %d (%d blocking acks, %d non-blocking, %d controller)\n", o.n, w.kinds[blocking].Load(), w.kinds[nonBlocking].Load(), w.kinds[byController].Load())
	fmt.Fprintf(stdout, "  produced in     %v (%.0f/s)\n", produced.Round(time.Millisecond), float64(o.n)/produced.Seconds())
	fmt.Fprintf(stdout, "  persisted in    %v (%.0f/s end to end)\n", drained.Round(time.Millisecond), float64(o.n)/drained.Seconds())
	fmt.Fprintf(stdout, "  completion p50  %v   p99 %v   (ack and/or Store, %d concurrent callers)\n", lat.p50, lat.p99, o.workers)
	fmt.Fprintf(stdout, "  Store p50       %v   p99 %v   (kafkastore publish latency)\n", st.PublishLatency.P50.Round(time.Microsecond), st.PublishLatency.P99.Round(time.Microsecond))
	fmt.Fprintf(stdout, "  published       %d   publish failures %d\n", st.Published, st.PublishFailures)
	if o.spoolDir != "" {
		fmt.Fprintf(stdout, "  spooled         %d   spool failures %d   spool append p50 %v   p99 %v   fdatasync p50 %v\n", st.Spooled, st.SpoolFailures,
			st.SpoolLatency.P50.Round(time.Microsecond), st.SpoolLatency.P99.Round(time.Microsecond), st.Spool.SyncLatency.P50.Round(time.Microsecond))
	}
	fmt.Fprintf(stdout, "  persisted       %d   conflicts %d   skipped %d   retries %d   dead-lettered %d\n", ps.Persisted, ps.Conflicts, ps.Skipped, ps.Retries, ps.DeadLettered)
	if err != nil {
		return fmt.Errorf("verify: %w", err)
	}
	if missing > 0 {
		return fmt.Errorf("%d of %d activations are missing from the primary", missing, o.n)
	}
	fmt.Fprintf(stdout, "  verified        all %d readable through Get, List and Count\n", o.n)
	return nil
}

func persistedOf(p *persister.Persister) int64 {
	s := p.Stats()
	return s.Persisted + s.Conflicts
}

func openPrimary(ctx context.Context, o options, logger *slog.Logger) (store.Store, string, func(), error) {
	if o.esURL != "" {
		pattern := o.indexPattern
		if pattern == "" {
			pattern = fmt.Sprintf("quickstart-%d-%%s", time.Now().Unix())
		}
		s, err := elasticsearch.New(ctx, o.esURL, elasticsearch.WithIndexPattern(pattern), elasticsearch.WithLogger(logger))
		if err != nil {
			return nil, "", nil, fmt.Errorf("open Elasticsearch: %w", err)
		}
		v := s.Server()
		return s, fmt.Sprintf("%s %s indices %s", v.Distribution, v.Version, pattern), func() { _ = s.Close() }, nil
	}
	if o.couchURL == "" {
		return memory.New(), "in memory", func() {}, nil
	}
	db := o.db
	if db == "" {
		db = fmt.Sprintf("quickstart_%d", time.Now().Unix())
	}
	s, err := couchdb.New(ctx, o.couchURL, db, couchdb.WithLogger(logger))
	if err != nil {
		return nil, "", nil, fmt.Errorf("open CouchDB: %w", err)
	}
	return s, "CouchDB database " + db, func() { _ = s.Close() }, nil
}

type progress struct {
	done chan struct{}
	wg   sync.WaitGroup
}

func (p *progress) stop() { close(p.done); p.wg.Wait() }

func startProgress(out io.Writer, w *workload, ps *persister.Persister, begin time.Time) *progress {
	pr := &progress{done: make(chan struct{})}
	pr.wg.Go(func() {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		var last int64
		for {
			select {
			case <-pr.done:
				return
			case <-t.C:
			}
			s := ps.Stats()
			persisted := s.Persisted + s.Conflicts
			var lag int64
			for _, pl := range s.Partitions {
				lag += pl.Lag
			}
			fmt.Fprintf(out, "%5.1fs  published %6d  persisted %6d  lag %6d  rate %6d/s\n",
				time.Since(begin).Seconds(), w.done.Load(), persisted, lag, persisted-last)
			last = persisted
		}
	})
	return pr
}

type quantiles struct{ p50, p99 time.Duration }

func quantilesOf(d []time.Duration) quantiles {
	if len(d) == 0 {
		return quantiles{}
	}
	slices.Sort(d)
	at := func(q float64) time.Duration { return d[min(len(d)-1, int(q*float64(len(d))))].Round(time.Microsecond) }
	return quantiles{p50: at(0.50), p99: at(0.99)}
}
