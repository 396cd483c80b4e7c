package kafkastore_test

import (
	"context"
	"encoding/binary"
	"errors"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/go-whisk/activationstore/codec"
	"github.com/go-whisk/activationstore/internal/activationtest"
	"github.com/go-whisk/activationstore/internal/childproc"
	"github.com/go-whisk/activationstore/internal/kafkatest"
	"github.com/go-whisk/activationstore/kafkastore"
	"github.com/go-whisk/activationstore/primary/memory"
	"github.com/go-whisk/activationstore/store"
)

// downBroker returns the address of a broker that is not up yet, and the
// function that starts it there (kfake, closed when the test ends).
func downBroker(t *testing.T) (addr string, start func() *kafkatest.Broker) {
	t.Helper()
	ports, err := childproc.FreePorts(1)
	require.NoError(t, err)
	addr = "127.0.0.1:" + strconv.Itoa(ports[0])
	return addr, func() *kafkatest.Broker {
		return kafkatest.StartFake(t, kfake.Ports(ports[0]), kfake.ListenFn(func(network, _ string) (net.Listener, error) {
			return net.Listen(network, addr)
		}))
	}
}

// newSpooledStore returns a Store with a spool in dir, closed when the
// test ends.
func newSpooledStore(t *testing.T, addr, topic, dir string, primary store.Store, opts ...kafkastore.Option) *kafkastore.Store {
	t.Helper()
	// A WithSpool among opts replaces this one: the last option wins.
	all := append([]kafkastore.Option{kafkastore.WithBrokers(addr), kafkastore.WithTopic(topic), kafkastore.WithSpool(dir)}, opts...)
	s, err := kafkastore.New(primary, all...)
	require.NoError(t, err, "kafkastore.New with a spool")
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// waitPublished waits until topic holds n records and the Store's spool
// is empty.
func waitPublished(t *testing.T, s *kafkastore.Store, b *kafkatest.Broker, topic string, n int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		var total int64
		offs, err := b.EndOffsets(ctxT(t), topic)
		if err == nil {
			for _, o := range offs {
				total += o
			}
		}
		st := s.Stats()
		if total >= int64(n) && st.Spool.Records == 0 {
			require.EqualValues(t, n, total, "records in %s", topic)
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 30 s: %d of %d records in %s; spool holds %d (publish errors %d)", total, n, topic, st.Spool.Records, st.Spool.PublishErrors)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestSpoolTakesStoresWhileKafkaIsDown: New succeeds with no broker up,
// Stores return at disk speed, and once a broker is up the publisher
// creates the topic and publishes every record, decodable as without a
// spool.
func TestSpoolTakesStoresWhileKafkaIsDown(t *testing.T) {
	addr, start := downBroker(t)
	topic := kafkatest.Topic(t, "completed-spool")
	s := newSpooledStore(t, addr, topic, t.TempDir(), memory.New())

	const n = 200
	ids := map[string]bool{}
	for range n {
		a := activationtest.New("guest")
		ids[a.ActivationID] = true
		began := time.Now()
		info, err := s.Store(ctxT(t), a, store.UserContext{TransactionID: "tid-spool"})
		require.NoError(t, err, "Store with Kafka down")
		require.Equal(t, a.DocID(), info.ID)
		require.Less(t, time.Since(began), time.Second, "a spooled Store waited on Kafka")
	}
	st := s.Stats()
	require.EqualValues(t, n, st.Spooled)
	require.Zero(t, st.Published)
	require.EqualValues(t, n, st.Spool.Records)
	require.Positive(t, st.Spool.OldestAge)
	require.Equal(t, uint64(n), st.SpoolLatency.Count)
	require.NoError(t, s.Ready(), "a spool far from full with a healthy disk is ready")

	b := start()
	waitPublished(t, s, b, topic, n)
	offs, err := b.EndOffsets(ctxT(t), topic)
	require.NoError(t, err)
	assert.Len(t, offs, kafkastore.DefaultTopicPartitions, "the publisher created the topic with the Store's settings")
	for _, m := range records(t, b, topic) {
		msg, err := codec.Decode(m.Value)
		require.NoError(t, err)
		a := msg.Activation()
		require.NotNil(t, a)
		assert.True(t, ids[a.ActivationID], "unexpected activation %s", a.ActivationID)
		delete(ids, a.ActivationID)
		assert.Equal(t, a.ActivationID, string(m.Key))
		assert.Equal(t, kafkastore.ContentTypeResultMessage, header(m, kafkastore.HeaderContentType))
		assert.WithinDuration(t, time.Now(), m.Time, time.Minute, "the record's timestamp is its Store's")
	}
	assert.Empty(t, ids, "activations never published")
	st = s.Stats()
	assert.EqualValues(t, n, st.Published)
	assert.Positive(t, st.Spool.PublishErrors, "the publisher counted its failed attempts while Kafka was down")
	assert.Zero(t, st.Spool.OldestAge)
}

// TestSpoolReplaysWhatAnEarlierStoreLeft: records spooled by a Store
// closed while Kafka was down are published by the next Store on the
// directory.
func TestSpoolReplaysWhatAnEarlierStoreLeft(t *testing.T) {
	addr, start := downBroker(t)
	topic := kafkatest.Topic(t, "completed-replay")
	dir := t.TempDir()
	first, err := kafkastore.New(memory.New(), kafkastore.WithBrokers(addr), kafkastore.WithTopic(topic), kafkastore.WithSpool(dir))
	require.NoError(t, err)
	const n = 300
	for range n {
		_, err := first.Store(ctxT(t), activationtest.New("guest"), store.UserContext{})
		require.NoError(t, err)
	}
	began := time.Now()
	require.NoError(t, first.Close())
	assert.Less(t, time.Since(began), 5*time.Second, "Close waited for a Kafka that is down")

	b := start()
	second := newSpooledStore(t, addr, topic, dir, memory.New())
	assert.EqualValues(t, n, second.Stats().Spool.Replayed, "records the first Store left")
	waitPublished(t, second, b, topic, n)
	assert.EqualValues(t, n, second.Stats().Published)
}

// TestSpoolHasOneOwner: a second Store on a spool directory fails with
// ErrSpoolLocked while the first is open, and opens once it is closed.
func TestSpoolHasOneOwner(t *testing.T) {
	addr, _ := downBroker(t)
	dir := t.TempDir()
	first, err := kafkastore.New(memory.New(), kafkastore.WithBrokers(addr), kafkastore.WithSpool(dir))
	require.NoError(t, err)
	_, err = kafkastore.New(memory.New(), kafkastore.WithBrokers(addr), kafkastore.WithSpool(dir))
	require.ErrorIs(t, err, kafkastore.ErrSpoolLocked)
	assert.Contains(t, err.Error(), dir, "the error names the directory")
	require.NoError(t, first.Close())
	again, err := kafkastore.New(memory.New(), kafkastore.WithBrokers(addr), kafkastore.WithSpool(dir))
	require.NoError(t, err, "the directory is free once its Store is closed")
	require.NoError(t, again.Close())
}

// TestSpoolFull: with Kafka down, a spool at its bound refuses Stores
// with ErrSpoolFull once their context ends (or stores them in the
// primary with WithFallbackToPrimary), uses no more than its bound plus a
// segment, reports itself not ready, and takes records again once Kafka
// has drained it.
func TestSpoolFull(t *testing.T) {
	addr, start := downBroker(t)
	topic := kafkatest.Topic(t, "completed-full")
	dir := t.TempDir()
	const maxBytes, segment = 8 << 20, 512 << 10
	primary := memory.New()
	s := newSpooledStore(t, addr, topic, dir, primary,
		kafkastore.WithSpool(dir, kafkastore.WithSpoolMaxBytes(maxBytes), kafkastore.WithSpoolSegmentBytes(segment)))

	stored := 0
	var full error
	for stored < 1000 {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		_, err := s.Store(ctx, bigActivation(t, 100<<10), store.UserContext{})
		cancel()
		if err != nil {
			full = err
			break
		}
		stored++
	}
	require.Error(t, full, "%d Stores of 100 KiB fit a spool of 8 MiB", stored)
	require.ErrorIs(t, full, kafkastore.ErrSpoolFull)
	var serr *kafkastore.SpoolError
	require.ErrorAs(t, full, &serr)
	assert.Equal(t, dir, serr.Dir)
	assert.Greater(t, stored, 60, "a spool of 8 MiB took only %d records of 100 KiB", stored)
	require.ErrorIs(t, s.Ready(), kafkastore.ErrSpoolFull)
	st := s.Stats()
	assert.LessOrEqual(t, st.Spool.DiskBytes, int64(maxBytes+segment), "disk use beyond the bound plus a segment")
	assert.LessOrEqual(t, diskUse(t, dir), int64(maxBytes+segment), "files in %s beyond the bound plus a segment", dir)
	assert.EqualValues(t, 1, st.SpoolFailures)
	assert.Positive(t, st.Spool.FullRejections)

	b := start()
	waitPublished(t, s, b, topic, stored)
	require.Eventually(t, func() bool { return s.Stats().Spool.DiskBytes < maxBytes/2 }, 10*time.Second, 20*time.Millisecond,
		"the spool freed no space once Kafka took its records")
	require.NoError(t, s.Ready())
	_, err := s.Store(ctxT(t), bigActivation(t, 100<<10), store.UserContext{})
	require.NoError(t, err, "a drained spool takes records again")
}

// TestSpoolFullFallsBackToPrimary: with WithFallbackToPrimary, a record
// the full spool does not take is stored in the primary.
func TestSpoolFullFallsBackToPrimary(t *testing.T) {
	addr, _ := downBroker(t)
	dir := t.TempDir()
	primary := memory.New()
	s := newSpooledStore(t, addr, kafkatest.Topic(t, "completed-fallback"), dir, primary,
		kafkastore.WithSpool(dir, kafkastore.WithSpoolMaxBytes(8<<20), kafkastore.WithSpoolSegmentBytes(512<<10)),
		kafkastore.WithFallbackToPrimary(true))
	var fellBack *store.Activation
	for i := 0; i < 1000 && fellBack == nil; i++ {
		a := bigActivation(t, 100<<10)
		// Half of it for the spool, half for the primary: room for a
		// busy machine's scheduling.
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, err := s.Store(ctx, a, store.UserContext{})
		cancel()
		require.NoError(t, err, "Store %d with a fallback", i)
		if s.Stats().Fallbacks > 0 {
			fellBack = a
		}
	}
	require.NotNil(t, fellBack, "no Store fell back to the primary")
	_, err := primary.Get(ctxT(t), fellBack.Namespace, fellBack.ActivationID, store.UserContext{})
	require.NoError(t, err, "the record the spool refused is in the primary")
	assert.Equal(t, 1, primary.Len())
}

// TestSpoolOptionsAreChecked: bounds a spool cannot work with are
// configuration errors.
func TestSpoolOptionsAreChecked(t *testing.T) {
	for name, opt := range map[string]kafkastore.Option{
		"empty dir":        kafkastore.WithSpool(""),
		"tiny max bytes":   kafkastore.WithSpool(t.TempDir(), kafkastore.WithSpoolMaxBytes(1000)),
		"below 4 records":  kafkastore.WithSpool(t.TempDir(), kafkastore.WithSpoolMaxBytes(2<<20)),
		"tiny segment":     kafkastore.WithSpool(t.TempDir(), kafkastore.WithSpoolSegmentBytes(100)),
		"nil spool option": kafkastore.WithSpool(t.TempDir(), nil),
		"zero age warning": kafkastore.WithSpool(t.TempDir(), kafkastore.WithSpoolAgeWarning(0)),
	} {
		_, err := kafkastore.New(memory.New(), kafkastore.WithBrokers("127.0.0.1:1"), opt)
		assert.ErrorIs(t, err, kafkastore.ErrConfig, name)
	}
}

// diskUse is the size of the files under dir: preallocated segments
// count in full.
func diskUse(t *testing.T, dir string) int64 {
	t.Helper()
	var total int64
	err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		info, err := d.Info()
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return nil
			}
			return err
		}
		total += info.Size()
		return nil
	})
	require.NoError(t, err)
	return total
}

// TestSpoolWarnsOfOldRecords: while the oldest spooled record is older
// than WithSpoolAgeWarning, the Store logs a warning saying how old and
// how many are waiting, and that Kafka is failing.
func TestSpoolWarnsOfOldRecords(t *testing.T) {
	addr, _ := downBroker(t)
	dir := t.TempDir()
	var logs logBuffer
	s := newSpooledStore(t, addr, kafkatest.Topic(t, "completed-age"), dir, memory.New(),
		kafkastore.WithSpool(dir, kafkastore.WithSpoolAgeWarning(100*time.Millisecond)), kafkastore.WithLogger(logs.logger()))
	for range 3 {
		_, err := s.Store(ctxT(t), activationtest.New("guest"), store.UserContext{})
		require.NoError(t, err)
	}
	var warnings []map[string]any
	require.Eventually(t, func() bool {
		warnings = logs.entries(t, slog.LevelWarn, "spooled records are waiting for Kafka")
		return len(warnings) > 0
	}, 5*time.Second, 20*time.Millisecond, "no warning of old spooled records")
	w := warnings[0]
	assert.EqualValues(t, 3, w["records"])
	assert.Equal(t, true, w["kafkaFailing"])
	age := time.Duration(w["oldestAge"].(float64)) // slog's JSON: nanoseconds
	assert.GreaterOrEqual(t, age, 100*time.Millisecond)
	time.Sleep(300 * time.Millisecond)
	assert.Len(t, logs.entries(t, slog.LevelWarn, "spooled records are waiting for Kafka"), 1, "the warning repeats at most once a minute")
}

// TestSpoolDamagedUnderARunningStore: a frame the disk corrupts while the
// Store runs stops the publisher at it, loudly (Ready says so), and loses
// nothing before it; the next Store on the directory sets the damage
// aside (quarantine) and publishes every other record.
func TestSpoolDamagedUnderARunningStore(t *testing.T) {
	addr, start := downBroker(t)
	topic := kafkatest.Topic(t, "completed-damaged")
	dir := t.TempDir()
	first, err := kafkastore.New(memory.New(), kafkastore.WithBrokers(addr), kafkastore.WithTopic(topic), kafkastore.WithSpool(dir))
	require.NoError(t, err)
	store1 := func() {
		_, err := first.Store(ctxT(t), activationtest.New("guest"), store.UserContext{})
		require.NoError(t, err)
	}
	// The publisher reads the first record and waits for Kafka with it;
	// the others wait in the file.
	store1()
	time.Sleep(200 * time.Millisecond)
	const n = 40
	for range n - 1 {
		store1()
	}
	segs, err := filepath.Glob(filepath.Join(dir, "*.seg"))
	require.NoError(t, err)
	require.Len(t, segs, 1)
	flipPayloadByte(t, segs[0], 20) // the 21st record

	b := start()
	require.Eventually(t, func() bool { return first.Ready() != nil }, 20*time.Second, 20*time.Millisecond,
		"a damaged frame under a running Store does not show in Ready")
	assert.Contains(t, first.Ready().Error(), "cannot be read")
	offs, err := b.EndOffsets(ctxT(t), topic)
	require.NoError(t, err)
	var before int64
	for _, o := range offs {
		before += o
	}
	assert.EqualValues(t, 20, before, "every record before the damaged one is published, none after")
	require.NoError(t, first.Close())

	second := newSpooledStore(t, addr, topic, dir, memory.New())
	waitPublished(t, second, b, topic, n-1)
	st := second.Stats().Spool
	assert.EqualValues(t, 1, st.CorruptFrames, "the damaged frame is counted")
	assert.EqualValues(t, 1, st.Quarantined, "its segment is copied aside")
	q, err := filepath.Glob(filepath.Join(dir, "quarantine", "*"))
	require.NoError(t, err)
	assert.Len(t, q, 1)
}

// flipPayloadByte flips a byte in the payload of frame k (from 0) of a
// spool segment: frames are a 28-byte header, whose bytes 4–7 are the
// payload's length, then the payload.
func flipPayloadByte(t *testing.T, path string, k int) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	require.NoError(t, err)
	defer f.Close()
	var off int64
	var h [28]byte
	for range k {
		_, err := f.ReadAt(h[:], off)
		require.NoError(t, err)
		off += 28 + int64(binary.LittleEndian.Uint32(h[4:8]))
	}
	var c [1]byte
	_, err = f.ReadAt(c[:], off+28+10)
	require.NoError(t, err)
	c[0] ^= 0x40
	_, err = f.WriteAt(c[:], off+28+10)
	require.NoError(t, err)
	require.NoError(t, f.Sync())
}
