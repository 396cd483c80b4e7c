package persister

import (
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/segmentio/kafka-go"

	"github.com/go-whisk/activationstore/kafkastore/internal/kafkaconn"
	"github.com/go-whisk/activationstore/store"
)

// ErrRunning is returned by Run when the Persister is running already.
var ErrRunning = errors.New("persister: Run called while it is running; use one Persister per Run, or more persisters in one group")

// Persister consumes the activation topics into the primary store, at
// least once: an offset is committed only when every record before it is
// persisted, found already persisted (store.ErrConflict), skipped (it
// carries no activation) or dead-lettered. Persisters sharing a group id
// share the partitions.
//
// Records are written in batches (store.BatchStorer when the primary has
// it, else concurrent Store calls). Failed writes are retried with backoff
// for as long as they fail, without committing: a primary that is down
// stops the persister, it does not lose records. Store levels are not
// applied here: whoever published a record decided already, and a record
// its writer decided not to store (an ack that must carry the activation
// all the same) is marked with kafkastore.HeaderStoreSkip, which the persister
// honours.
type Persister struct {
	primary store.Store
	batch   store.BatchStorer // nil: concurrent Store calls
	cfg     config
	log     *slog.Logger
	retry   kafkaconn.Backoff // every retry: writes, reads, joins, the dead-letter topic

	// kafka-go's Reader and Conn take a Dialer, its Client and Writer a
	// Transport: both are built from the same settings.
	dialer    *kafka.Dialer    // partition readers, topic discovery
	transport *kafka.Transport // consumer group, dead letters, topic creation, log start offsets
	dlqWriter *kafka.Writer
	budget    *persistBudget
	storeSem  chan struct{} // bounds concurrent Store calls

	running atomic.Bool
	ready   atomic.Bool
	stats   persisterCounters
	losses  retentionLosses

	partsMu sync.Mutex
	parts   []*persistPartition // assigned in the current generation

	apis            []persisterAPI // request versions the brokers must accept
	versionsChecked bool           // a broker accepted them, in this Run
}

// New returns a persister of records into primary. kafkastore.WithBrokers
// is required; the other options have documented defaults. Nothing
// connects before Run.
func New(primary store.Store, opts ...Option) (*Persister, error) {
	if primary == nil {
		return nil, kafkaconn.ConfigError("persister.New: nil primary store")
	}
	c := config{persisterConfig: defaultPersisterConfig()}
	if err := applyOptions(&c, opts); err != nil {
		return nil, err
	}
	p := &Persister{
		primary:   primary,
		cfg:       c,
		log:       c.conn.Logger.With("component", "persister", "group", c.groupID, "clientId", c.conn.ClientID),
		retry:     kafkaconn.Backoff{Min: c.retryMin, Max: c.retryMax},
		dialer:    c.conn.Dialer(),
		transport: c.conn.Transport(), // its Context is set per Run
		budget:    newPersistBudget(c.maxInFlightBytes),
		storeSem:  make(chan struct{}, c.writeConcurrency),
		apis:      persisterAPIs,
	}
	if b, ok := primary.(store.BatchStorer); ok {
		p.batch = b
	}
	return p, nil
}

// Ready reports whether Run is consuming: it has joined a consumer group
// generation (or found no topic to follow, so has nothing to wait for). It
// stays true through rebalances, and turns false when Run returns. For a
// service's readiness probe.
func (p *Persister) Ready() bool { return p.ready.Load() }
