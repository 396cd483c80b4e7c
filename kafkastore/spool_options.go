package kafkastore

import (
	"errors"
	"fmt"
	"time"

	"github.com/go-whisk/activationstore/kafkastore/internal/spool"
)

// Defaults of the spool's options.
const (
	// DefaultSpoolMaxBytes bounds the disk a spool uses: 1 GiB, about a
	// million typical activations, or an hour of a busy invoker's records
	// while Kafka is down. Disk use stays below it plus one segment.
	DefaultSpoolMaxBytes = spool.DefaultMaxBytes

	// DefaultSpoolAgeWarning is the age of the oldest unpublished record
	// from which the Store logs a warning (once a minute): records that
	// old mean Kafka has not taken any for that long.
	DefaultSpoolAgeWarning = time.Minute
)

// ErrSpoolFull is matched by the error of a Store (or PublishAck) that
// waited for room in a full spool until its context or the publish
// timeout ended. Nothing was written; with WithFallbackToPrimary the
// record went to the primary instead.
var ErrSpoolFull = spool.ErrFull

// ErrSpoolLocked is matched by New's error when another process (or Store)
// has the spool directory open.
var ErrSpoolLocked = spool.ErrLocked

// SpoolOption configures the spool of WithSpool.
type SpoolOption interface {
	applySpool(*spoolConfig) error
}

type spoolOption struct {
	name  string
	apply func(*spoolConfig) error
}

func (o spoolOption) applySpool(c *spoolConfig) error {
	if o.apply == nil {
		return errors.New("zero SpoolOption; build options with the WithSpool… functions")
	}
	if err := o.apply(c); err != nil {
		return fmt.Errorf("%s: %w", o.name, err)
	}
	return nil
}

type spoolConfig struct {
	dir          string
	maxBytes     int64
	segmentBytes int64
	ageWarning   time.Duration
}

// WithSpool makes Store durable on local disk before Kafka: a Store
// returns once its record is written and fdatasynced in dir (concurrent
// Stores share one write and one sync), and a background publisher sends
// the spooled records to Kafka in spool order, with the Store's routing
// and failover, removing them only once Kafka acknowledged them. A broker
// failover or a Kafka outage then costs a caller one local sync, not the
// election, and New succeeds while no broker answers (topic creation waits
// for the publisher). What an earlier process left in dir is published
// first.
//
// dir must be on a local file system that outlives the process (in
// Kubernetes, a volume that outlives the container), and is owned by one
// Store at a time: a second New on it fails with ErrSpoolLocked.
func WithSpool(dir string, opts ...SpoolOption) Option {
	return option("WithSpool", func(c *storeConfig) error {
		if dir == "" {
			return errors.New("empty directory")
		}
		sc := spoolConfig{dir: dir, maxBytes: DefaultSpoolMaxBytes, ageWarning: DefaultSpoolAgeWarning}
		for _, o := range opts {
			if o == nil {
				return errors.New("nil SpoolOption")
			}
			if err := o.applySpool(&sc); err != nil {
				return err
			}
		}
		c.spool = &sc
		return nil
	})
}

// WithSpoolMaxBytes bounds the spool's disk use; default
// DefaultSpoolMaxBytes (1 GiB). When it is full, a Store waits for room
// (the publisher frees a segment once Kafka took its records) until its
// context or the publish timeout ends, then returns an error matching
// ErrSpoolFull, or writes to the primary with WithFallbackToPrimary.
// Records not yet in Kafka are never dropped to make room.
func WithSpoolMaxBytes(n int64) SpoolOption {
	return spoolOption{"WithSpoolMaxBytes", func(c *spoolConfig) error {
		if n < 1<<20 {
			return fmt.Errorf("%d bytes: want at least 1 MiB", n)
		}
		c.maxBytes = n
		return nil
	}}
}

// WithSpoolSegmentBytes sets the size of the spool's segment files, the
// unit in which disk is preallocated and freed; default the smaller of
// 64 MiB and a quarter of the max bytes.
func WithSpoolSegmentBytes(n int64) SpoolOption {
	return spoolOption{"WithSpoolSegmentBytes", func(c *spoolConfig) error {
		if n < 64<<10 {
			return fmt.Errorf("%d bytes: want at least 64 KiB", n)
		}
		c.segmentBytes = n
		return nil
	}}
}

// WithSpoolAgeWarning sets the age of the oldest unpublished record from
// which the Store logs a warning, once a minute; default
// DefaultSpoolAgeWarning (1 minute).
func WithSpoolAgeWarning(d time.Duration) SpoolOption {
	return spoolOption{"WithSpoolAgeWarning", func(c *spoolConfig) error {
		if d <= 0 {
			return fmt.Errorf("%v: want a positive duration", d)
		}
		c.ageWarning = d
		return nil
	}}
}
