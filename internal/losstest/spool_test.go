package losstest

import (
	"context"
	"encoding/json"
	"errors"
	"io/fs"
	"log/slog"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/go-whisk/activationstore/internal/kafkatest"
	"github.com/go-whisk/activationstore/internal/logtest"
	"github.com/go-whisk/activationstore/kafkastore"
	"github.com/go-whisk/activationstore/primary/memory"
	"github.com/go-whisk/activationstore/store"
)

// switchedKafka is a Kafka a test takes down and brings back: by default
// kfake, which while down closes the connection of every request, as a
// dead broker's connections break; under KAFKATEST=apache a dedicated
// one-node Apache cluster, SIGKILLed and restarted on its data.
type switchedKafka struct {
	*kafkatest.Broker
	apache  bool
	down    atomic.Bool
	retired atomic.Bool // kfake: the control function drops itself
}

func startSwitchedKafka(t *testing.T) *switchedKafka {
	t.Helper()
	kind, err := kafkatest.Selected()
	if err != nil {
		t.Fatal(err)
	}
	k := &switchedKafka{apache: kind == kafkatest.KindApache}
	if k.apache {
		k.Broker = kafkatest.StartApache(t, kafkatest.WithNodes(1))
		return k
	}
	if kind == kafkatest.KindExternal {
		t.Logf("losstest: %s names a cluster this test cannot take down: it runs kfake", kafkatest.EnvBrokers)
	}
	k.Broker = kafkatest.StartFake(t)
	c := k.Cluster()
	c.Control(func(kmsg.Request) (kmsg.Response, error, bool) {
		if k.retired.Load() {
			c.DropControl()
			return nil, nil, false
		}
		c.KeepControl()
		if k.down.Load() {
			return nil, errors.New("losstest: Kafka is down"), true
		}
		return nil, nil, false
	})
	return k
}

// Down takes Kafka down: no request gets an answer until Up.
func (k *switchedKafka) Down(t *testing.T) {
	t.Helper()
	if k.down.Swap(true) || !k.apache {
		return
	}
	if err := k.Kill(0); err != nil {
		t.Fatalf("kill the Kafka node: %v", err)
	}
}

// Up brings Kafka back, returning once it answers.
func (k *switchedKafka) Up(ctx context.Context, t *testing.T) {
	t.Helper()
	if !k.down.Load() {
		return
	}
	if k.apache {
		if err := k.Restart(ctx, 0); err != nil {
			t.Fatalf("restart the Kafka node: %v", err)
		}
	}
	k.down.Store(false)
}

// UpForGood brings Kafka back for the rest of the test: kfake then serves
// requests as it does without the switch.
func (k *switchedKafka) UpForGood(ctx context.Context, t *testing.T) {
	t.Helper()
	k.Up(ctx, t)
	k.retired.Store(true)
}

// IsDown reports whether Kafka is down.
func (k *switchedKafka) IsDown() bool { return k.down.Load() }

// diskUse is the size of the files under dir: preallocated segments count
// in full.
func diskUse(t *testing.T, dir string) int64 {
	t.Helper()
	var total int64
	err := filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		info, err := d.Info()
		if errors.Is(err, fs.ErrNotExist) {
			return nil // deleted meanwhile
		}
		if err != nil {
			return err
		}
		total += info.Size()
		return nil
	})
	if err != nil {
		t.Fatalf("disk use of %s: %v", dir, err)
	}
	return total
}

// bigActivation is activation i of run with a result of about size bytes.
func bigActivation(run uint32, i, size int) *store.Activation {
	a := Activation(run, i)
	a.Response.Result = json.RawMessage(`{"i":` + strconv.Itoa(i) + `,"pad":"` + strings.Repeat("x", size) + `"}`)
	return a
}

// drainTopic starts a persister group draining topic into a fresh CouchDB
// database, and returns once the group's lag is 0, with the database,
// the documents the group wrote first and the records it found already
// stored (duplicates).
func drainTopic(ctx context.Context, t *testing.T, b *kafkatest.Broker, topic string, within time.Duration) (couchURL, db string, persisted, conflicts int64) {
	t.Helper()
	primary, couchURL, db := couchPrimary(ctx, t)
	var log logtest.Buffer
	group := kafkatest.Topic(t, "group")
	members := startChaosMembers(t, primary, b.Addrs(), group, regexp.MustCompile("^"+regexp.QuoteMeta(topic)+"$"), &log, "spool-persister")
	waitFor(t, within, "the persister group's lag to reach 0", func() bool {
		lag, err := GroupLag(ctx, b, group, topic)
		return err == nil && lag == 0
	})
	for _, m := range members {
		m.stop(t)
		// A write abandoned mid-flight (a CouchDB cluster's 202 or lost
		// reply) and found stored on its retry counts in Persisted and
		// Redelivered: the document was written once, by the first try.
		st := m.p.Stats()
		persisted += st.Persisted - st.Redelivered
		conflicts += st.Conflicts + st.Redelivered
	}
	if t.Failed() {
		t.Logf("persister's log (tail):\n%s", log.Tail(40))
	}
	return couchURL, db, persisted, conflicts
}

// Kafka is down while a Store with a 16 MiB spool of 1 MiB segments takes
// records of 100 KiB until the spool is full. Asserted: the Store that
// finds it full fails after its context (200 ms) with a *SpoolError
// matching ErrSpoolFull, naming the directory, and nothing of it is
// written; Ready matches ErrSpoolFull; the files in the directory never
// exceed the bound plus one segment; once Kafka is back, the spool drains,
// its disk use falls, Ready is nil, it takes records again, and a
// persister group reaches lag 0 with every stored record in CouchDB once.
func TestSpoolKafkaDownUntilFull(t *testing.T) {
	const (
		maxBytes, segment = 16 << 20, 1 << 20
		recordSize        = 100 << 10
		storeTimeout      = 200 * time.Millisecond
	)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	k := startSwitchedKafka(t)
	topic := kafkatest.Topic(t, "completed-spoolfull")
	k.CreateTopic(t, topic, 4, nil)
	k.Down(t)

	dir := t.TempDir()
	var storeLog logtest.Buffer
	s, err := kafkastore.New(memory.New(),
		kafkastore.WithBrokers(k.Addrs()...),
		kafkastore.WithTopic(topic),
		kafkastore.WithSpool(dir, kafkastore.WithSpoolMaxBytes(maxBytes), kafkastore.WithSpoolSegmentBytes(segment)),
		kafkastore.WithLogger(slog.New(slog.NewTextHandler(&storeLog, &slog.HandlerOptions{Level: slog.LevelWarn}))),
	)
	if err != nil {
		t.Fatalf("kafkastore.New with Kafka down: %v", err)
	}
	defer func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		if t.Failed() {
			t.Logf("Store's log (tail):\n%s", storeLog.Tail(40))
		}
	}()

	run := NewRun()
	stored, maxDisk := 0, int64(0)
	var full error
	var fullTook time.Duration
	began := time.Now()
	for stored < 1000 {
		c, cancel := context.WithTimeout(ctx, storeTimeout)
		t0 := time.Now()
		_, err := s.Store(c, bigActivation(run, stored, recordSize), store.UserContext{})
		cancel()
		maxDisk = max(maxDisk, diskUse(t, dir))
		if err != nil {
			full, fullTook = err, time.Since(t0)
			break
		}
		stored++
	}
	filled := time.Since(began)
	if full == nil {
		t.Fatalf("%d Stores of %d KiB fit a spool of %d MiB with Kafka down", stored, recordSize>>10, maxBytes>>20)
	}
	if !errors.Is(full, kafkastore.ErrSpoolFull) {
		t.Fatalf("the Store that found the spool full: %v; want an error matching ErrSpoolFull", full)
	}
	var serr *kafkastore.SpoolError
	if !errors.As(full, &serr) || serr.Dir != dir {
		t.Errorf("the Store's error %T %v: want a *SpoolError naming %s", full, full, dir)
	}
	if fullTook < storeTimeout*9/10 {
		t.Errorf("the Store failed after %v: want it to wait for room until its context ended (%v)", fullTook, storeTimeout)
	}
	// The live segments hold at least 12 of the 16 MiB: a segment of 1 MiB
	// holds 9 records of 100 KiB at least.
	if stored*recordSize < maxBytes*3/4 {
		t.Errorf("the spool was full after %d records of 100 KiB (%d MiB); want at least 3/4 of its %d MiB", stored, stored*recordSize>>20, maxBytes>>20)
	}
	ready := s.Ready()
	if !errors.Is(ready, kafkastore.ErrSpoolFull) {
		t.Errorf("Ready with the spool full: %v; want an error matching ErrSpoolFull", ready)
	}
	full1 := s.Stats()
	if maxDisk > maxBytes+segment || full1.Spool.DiskBytes > maxBytes+segment {
		t.Errorf("disk use up to %d bytes (Stats: %d); want at most the bound plus a segment, %d", maxDisk, full1.Spool.DiskBytes, maxBytes+segment)
	}
	if full1.Published != 0 || full1.Spool.Records != int64(stored) || full1.SpoolFailures != 1 {
		t.Errorf("Stats with Kafka down: published %d, spooled records %d, spool failures %d; want 0, %d, 1", full1.Published, full1.Spool.Records, full1.SpoolFailures, stored)
	}

	k.UpForGood(ctx, t)
	up := time.Now()
	waitFor(t, 2*time.Minute, "the spool to drain into Kafka", func() bool { return s.Stats().Spool.Records == 0 })
	drained := time.Since(up)
	waitFor(t, 10*time.Second, "the spool's disk use to fall below half its bound", func() bool {
		return s.Stats().Spool.DiskBytes < maxBytes/2 && diskUse(t, dir) < maxBytes/2
	})
	after := s.Stats()
	afterDisk := diskUse(t, dir)
	if err := s.Ready(); err != nil {
		t.Errorf("Ready once Kafka drained the spool: %v", err)
	}
	// The refused record's index again: were any of it written, Kafka
	// would hold it twice.
	if _, err := s.Store(ctx, bigActivation(run, stored, recordSize), store.UserContext{}); err != nil {
		t.Fatalf("Store into the drained spool: %v", err)
	}
	n := stored + 1
	waitFor(t, time.Minute, "the last record to reach Kafka", func() bool { return s.Stats().Spool.Records == 0 })
	var inKafka int64
	ends, err := k.EndOffsets(ctx, topic)
	if err != nil {
		t.Fatalf("end offsets of %s: %v", topic, err)
	}
	for _, e := range ends {
		inKafka += e
	}
	if inKafka != int64(n) {
		t.Errorf("%s holds %d records; want the %d stored", topic, inKafka, n)
	}

	couchURL, db, persisted, conflicts := drainTopic(ctx, t, k.Broker, topic, 2*time.Minute)
	tally := checkDatabase(ctx, t, couchURL, db, run, n, time.Minute)
	final := s.Stats()
	t.Logf("SUMMARY %s (Kafka %s): %d records of %d KiB stored with Kafka down in %v, then ErrSpoolFull after %v; disk use up to %d bytes (bound %d + segment %d), Stats.DiskBytes %d at full, %d segments; "+
		"Kafka back: spool drained in %v, DiskBytes %d (files %d); full waits %d, rejections %d; publish errors while down %d; Kafka holds %d; persisted %d conflicts %d; CouchDB %v",
		t.Name(), k.Kind(), stored, recordSize>>10, filled.Round(time.Millisecond), fullTook.Round(time.Millisecond), maxDisk, maxBytes, segment, full1.Spool.DiskBytes, full1.Spool.Segments,
		drained.Round(time.Millisecond), after.Spool.DiskBytes, afterDisk, final.Spool.FullWaits, final.Spool.FullRejections, final.Spool.PublishErrors, inKafka, persisted, conflicts, tally)
}
