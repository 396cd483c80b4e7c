package kafkastore_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/sasl/plain"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/go-whisk/activationstore/codec"
	"github.com/go-whisk/activationstore/internal/activationtest"
	"github.com/go-whisk/activationstore/internal/kafkatest"
	"github.com/go-whisk/activationstore/internal/logtest"
	"github.com/go-whisk/activationstore/kafkastore"
	"github.com/go-whisk/activationstore/primary/memory"
	"github.com/go-whisk/activationstore/store"
	"github.com/go-whisk/activationstore/store/storetest"
)

// --- helpers ---

func newActivationID(t testing.TB) string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b[:])
}

// bigActivation returns an activation whose result is about n bytes.
func bigActivation(t testing.TB, n int) *store.Activation {
	a := activationtest.New("guest")
	a.Response.Result = json.RawMessage(`{"blob":"` + strings.Repeat("x", n) + `"}`)
	return a
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// newStore returns a Store on a fresh topic of b, closed when the test ends.
func newStore(t testing.TB, b *kafkatest.Broker, primary store.Store, opts ...kafkastore.Option) (*kafkastore.Store, string) {
	t.Helper()
	topic := kafkatest.Topic(t, "completed")
	all := append([]kafkastore.Option{kafkastore.WithBrokers(b.Addr()), kafkastore.WithTopic(topic)}, opts...)
	s, err := kafkastore.New(primary, all...)
	require.NoError(t, err, "kafkastore.New")
	t.Cleanup(func() { assert.NoError(t, s.Close(), "Close") })
	return s, topic
}

// endOffsets returns the high-water mark of every partition of topic.
func endOffsets(t testing.TB, b *kafkatest.Broker, topic string) map[int]int64 {
	t.Helper()
	out, err := b.EndOffsets(ctxT(t), topic)
	require.NoError(t, err, "end offsets of %s", topic)
	return out
}

// records reads every record of topic with an independent kafka-go Reader.
func records(t testing.TB, b *kafkatest.Broker, topic string) []kafka.Message {
	t.Helper()
	ctx := ctxT(t)
	var out []kafka.Message
	for p, end := range endOffsets(t, b, topic) {
		if end == 0 {
			continue
		}
		r := kafka.NewReader(kafka.ReaderConfig{Brokers: b.Addrs(), Topic: topic, Partition: p, MaxWait: 50 * time.Millisecond})
		for range end {
			m, err := r.ReadMessage(ctx)
			require.NoError(t, err, "read partition %d of %s", p, topic)
			out = append(out, m)
		}
		require.NoError(t, r.Close())
	}
	return out
}

func total(t testing.TB, b *kafkatest.Broker, topic string) int64 {
	t.Helper()
	var n int64
	for _, e := range endOffsets(t, b, topic) {
		n += e
	}
	return n
}

func header(m kafka.Message, key string) string {
	for _, h := range m.Headers {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}

// logBuffer captures slog records as JSON lines.
type logBuffer struct{ logtest.Buffer }

func (l *logBuffer) logger() *slog.Logger {
	return slog.New(slog.NewJSONHandler(l, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

// entries returns the logged records at level whose message contains msg.
func (l *logBuffer) entries(t testing.TB, level slog.Level, msg string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for line := range strings.Lines(l.String()) {
		var e map[string]any
		require.NoError(t, json.Unmarshal([]byte(line), &e), "log line %q", line)
		if e["level"] == level.String() && strings.Contains(e["msg"].(string), msg) {
			out = append(out, e)
		}
	}
	return out
}

// failingPrimary is a real memory primary whose Store fails while broken.
type failingPrimary struct {
	mem    *memory.Store
	broken bool
}

var errPrimaryDown = errors.New("primary is down")

func (p *failingPrimary) Store(ctx context.Context, a *store.Activation, uc store.UserContext) (store.DocInfo, error) {
	if p.broken {
		return store.DocInfo{}, errPrimaryDown
	}
	return p.mem.Store(ctx, a, uc)
}

func (p *failingPrimary) Get(ctx context.Context, ns, id string, uc store.UserContext) (*store.Activation, error) {
	return p.mem.Get(ctx, ns, id, uc)
}

func (p *failingPrimary) Delete(ctx context.Context, ns, id string, uc store.UserContext) error {
	return p.mem.Delete(ctx, ns, id, uc)
}

func (p *failingPrimary) List(ctx context.Context, q store.Query, uc store.UserContext) ([]*store.Activation, error) {
	return p.mem.List(ctx, q, uc)
}

func (p *failingPrimary) Count(ctx context.Context, q store.Query, uc store.UserContext) (int, error) {
	return p.mem.Count(ctx, q, uc)
}

// unreachable returns a loopback address nothing listens on.
func unreachable(t testing.TB) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	require.NoError(t, l.Close())
	return addr
}

// --- tests ---

func TestStorePublishesResultMessage(t *testing.T) {
	b := kafkatest.Start(t)
	primary := memory.New()
	s, topic := newStore(t, b, primary)

	a := activationtest.New("guest")
	uc := store.UserContext{TransactionID: "tid0123456789abcdef0123456789abc", ExtraLogging: true}
	before := time.Now().Add(-time.Second)
	info, err := s.Store(ctxT(t), a, uc)
	require.NoError(t, err)
	assert.Equal(t, store.DocInfo{ID: "guest/" + a.ActivationID}, info, "the document id without a revision, as OpenWhisk")

	recs := records(t, b, topic)
	require.Len(t, recs, 1)
	m := recs[0]
	assert.Equal(t, a.ActivationID, string(m.Key), "key")
	assert.Equal(t, kafkastore.ContentTypeResultMessage, header(m, kafkastore.HeaderContentType))
	assert.Equal(t, "guest", header(m, kafkastore.HeaderNamespace))
	assert.Equal(t, a.ActivationID, header(m, kafkastore.HeaderActivationID))

	msg, err := codec.Decode(m.Value)
	require.NoError(t, err, "codec.Decode(%s)", m.Value)
	rm, ok := msg.(*codec.ResultMessage)
	require.True(t, ok, "decoded as %T, want *codec.ResultMessage", msg)
	assert.Equal(t, uc.TransactionID, rm.TransID.ID)
	assert.True(t, rm.TransID.ExtraLogging, "extra logging travels in the transid")
	assert.True(t, rm.TransID.Start.After(before), "transid start is the current time: %v", rm.TransID.Start)
	got := msg.Activation()
	require.NotNil(t, got)
	assert.Equal(t, a.DocID(), got.DocID())
	assert.Equal(t, a.Logs, got.Logs)
	assert.JSONEq(t, string(a.Response.Result), string(got.Response.Result))
	assert.True(t, a.Start.Equal(got.Start) && a.End.Equal(got.End), "start/end")

	var raw map[string]json.RawMessage
	require.NoError(t, json.Unmarshal(m.Value, &raw))
	assert.ElementsMatch(t, []string{"transid", "response"}, keys(raw), "a ResultMessage has exactly transid and response")

	_, err = primary.Get(ctxT(t), "guest", a.ActivationID, store.UserContext{})
	assert.ErrorIs(t, err, store.ErrNotFound, "without store-in-primary the persister writes the primary, not Store")
	st := s.Stats()
	assert.Equal(t, uint64(1), st.Published)
	assert.Equal(t, uint64(1), st.PublishLatency.Count)
	assert.Positive(t, st.PublishLatency.P50)
}

func keys(m map[string]json.RawMessage) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func TestStoreSystemTransactionID(t *testing.T) {
	b := kafkatest.Start(t)
	s, topic := newStore(t, b, memory.New())
	_, err := s.Store(ctxT(t), activationtest.New("guest"), store.UserContext{})
	require.NoError(t, err)
	recs := records(t, b, topic)
	require.Len(t, recs, 1)
	msg, err := codec.Decode(recs[0].Value)
	require.NoError(t, err)
	rm := msg.(*codec.ResultMessage)
	assert.True(t, strings.HasPrefix(rm.TransID.ID, "sid_"), "a store without a transaction id uses a system id, got %q", rm.TransID.ID)
	assert.False(t, rm.TransID.ExtraLogging)
}

func TestStoreLogsInsideActivation(t *testing.T) {
	b := kafkatest.Start(t)
	topic := kafkatest.Topic(t, "activations")
	s, err := kafkastore.New(memory.New(), kafkastore.WithBrokers(b.Addr()), kafkastore.WithTopic(topic))
	require.NoError(t, err)
	defer s.Close()

	a := activationtest.New("guest")
	a.Logs = []string{"line 1", "line 2", strings.Repeat("l", 10_000)}
	_, err = s.Store(ctxT(t), a, store.UserContext{TransactionID: "ignored-in-this-mode"})
	require.NoError(t, err)

	recs := records(t, b, topic)
	require.Len(t, recs, 1)
	assert.Equal(t, kafkastore.ContentTypeActivation, header(recs[0], kafkastore.HeaderContentType))
	msg, err := codec.Decode(recs[0].Value)
	require.NoError(t, err)
	_, ok := msg.(*codec.ActivationRecord)
	require.True(t, ok, "on a non-completed topic the record is the activation itself, decoded as %T", msg)
	assert.Equal(t, a.Logs, msg.Activation().Logs, "logs travel inside")
	want, err := codec.MarshalActivation(a)
	require.NoError(t, err)
	assert.JSONEq(t, string(want), string(recs[0].Value), "exactly codec.MarshalActivation")
}

func TestStoreLogsInActivationOverridesTopicName(t *testing.T) {
	b := kafkatest.Start(t)
	for _, tc := range []struct {
		prefix string
		inside bool
		want   string
	}{
		{"completed", true, kafkastore.ContentTypeActivation},
		{"activations", false, kafkastore.ContentTypeResultMessage},
	} {
		topic := kafkatest.Topic(t, tc.prefix)
		s, err := kafkastore.New(memory.New(), kafkastore.WithBrokers(b.Addr()), kafkastore.WithTopic(topic),
			kafkastore.WithLogsInActivation(tc.inside))
		require.NoError(t, err)
		_, err = s.Store(ctxT(t), activationtest.New("guest"), store.UserContext{})
		require.NoError(t, err)
		require.NoError(t, s.Close())
		recs := records(t, b, topic)
		require.Len(t, recs, 1)
		assert.Equal(t, tc.want, header(recs[0], kafkastore.HeaderContentType), "topic %s, WithLogsInActivation(%v)", topic, tc.inside)
		msg, err := codec.Decode(recs[0].Value)
		require.NoError(t, err)
		assert.Equal(t, !tc.inside, isResult(msg), "topic %s: decoded as %T", topic, msg)
	}
}

func isResult(m codec.Message) bool { _, ok := m.(*codec.ResultMessage); return ok }

func TestConformanceStoreInPrimary(t *testing.T) {
	b := kafkatest.Start(t)
	s, topic := newStore(t, b, memory.New(), kafkastore.WithStoreInPrimary(true))
	storetest.Run(t, func(t *testing.T) store.Store { return s })
	st := s.Stats()
	assert.Positive(t, st.Published)
	assert.Positive(t, st.PrimaryStores)
	assert.Equal(t, int64(st.Published), total(t, b, topic), "every published record is in the topic")
}

func TestStoreInPrimaryReportsBothOutcomes(t *testing.T) {
	b := kafkatest.Start(t)
	primary := &failingPrimary{mem: memory.New()}
	var logs logBuffer
	s, topic := newStore(t, b, primary, kafkastore.WithStoreInPrimary(true), kafkastore.WithLogger(logs.logger()))
	ctx := ctxT(t)

	a := activationtest.New("guest")
	info, err := s.Store(ctx, a, store.UserContext{})
	require.NoError(t, err)
	assert.Equal(t, a.DocID(), info.ID)

	// A duplicate is published again (harmless) and the primary's conflict reported.
	_, err = s.Store(ctx, a, store.UserContext{})
	require.ErrorIs(t, err, store.ErrConflict)
	var pw *kafkastore.PrimaryWriteError
	require.ErrorAs(t, err, &pw, "the error says the record is in Kafka")
	assert.Contains(t, err.Error(), "is published")

	// The primary fails: the record IS in Kafka, and the error says so.
	primary.broken = true
	b2 := activationtest.New("guest")
	_, err = s.Store(ctx, b2, store.UserContext{})
	require.ErrorAs(t, err, &pw)
	assert.ErrorIs(t, err, errPrimaryDown)
	assert.Equal(t, b2.DocID(), pw.DocID)
	assert.NotErrorIs(t, err, kafkastore.ErrPublish)

	assert.Equal(t, int64(3), total(t, b, topic), "three records published")
	st := s.Stats()
	assert.Equal(t, uint64(3), st.Published)
	assert.Equal(t, uint64(1), st.PrimaryStores)
	assert.Equal(t, uint64(1), st.PrimaryConflicts)
	assert.Equal(t, uint64(1), st.PrimaryFailures)
	failures := logs.entries(t, slog.LevelError, "primary store failed")
	require.Len(t, failures, 1)
	assert.Equal(t, b2.ActivationID, failures[0]["activationId"])
}

func TestStoreRejectsInvalidInput(t *testing.T) {
	b := kafkatest.Start(t)
	primary := memory.New()
	s, topic := newStore(t, b, primary, kafkastore.WithStoreInPrimary(true))
	for name, mutate := range map[string]func(a *store.Activation){
		"namespace":    func(a *store.Activation) { a.Namespace = "_design/x" },
		"activationId": func(a *store.Activation) { a.ActivationID = "NOT-HEX" },
		"version":      func(a *store.Activation) { a.Version = "" },
	} {
		a := activationtest.New("guest")
		mutate(a)
		_, err := s.Store(ctxT(t), a, store.UserContext{})
		require.ErrorIs(t, err, store.ErrInvalid, name)
		var ie *store.InvalidError
		require.ErrorAs(t, err, &ie)
		assert.Equal(t, name, ie.Field)
	}
	_, err := s.Store(ctxT(t), nil, store.UserContext{})
	assert.ErrorIs(t, err, store.ErrInvalid)
	assert.Zero(t, total(t, b, topic), "nothing published")
	assert.Zero(t, primary.Len(), "nothing stored")
	assert.Equal(t, uint64(4), s.Stats().Invalid)
}

func TestStoreOversizeClientSide(t *testing.T) {
	b := kafkatest.Start(t)
	big := kafkastore.DefaultMaxRequestSize + 1000

	t.Run("ToPrimary", func(t *testing.T) {
		primary := memory.New()
		var logs logBuffer
		s, topic := newStore(t, b, primary, kafkastore.WithLogger(logs.logger()))
		a := bigActivation(t, big)
		info, err := s.Store(ctxT(t), a, store.UserContext{})
		require.NoError(t, err, "the default policy stores an oversize record in the primary")
		assert.Equal(t, a.DocID(), info.ID)
		got, err := primary.Get(ctxT(t), a.Namespace, a.ActivationID, store.UserContext{})
		require.NoError(t, err, "the record is in the primary")
		assert.Len(t, got.Response.Result, len(a.Response.Result))
		assert.Zero(t, total(t, b, topic), "nothing published")
		st := s.Stats()
		assert.Equal(t, uint64(1), st.Oversize)
		assert.Equal(t, uint64(1), st.OversizeToPrimary)
		assert.Equal(t, uint64(1), st.PrimaryStores)
		w := logs.entries(t, slog.LevelWarn, "too large")
		require.Len(t, w, 1, "one warning")
		assert.Equal(t, a.ActivationID, w[0]["activationId"])

		// Just below the limit still goes to Kafka.
		small := bigActivation(t, kafkastore.DefaultMaxRequestSize-2000)
		_, err = s.Store(ctxT(t), small, store.UserContext{})
		require.NoError(t, err)
		assert.Equal(t, int64(1), total(t, b, topic))
	})
	t.Run("Reject", func(t *testing.T) {
		primary := memory.New()
		s, topic := newStore(t, b, primary, kafkastore.WithOversizePolicy(kafkastore.OversizeReject))
		a := bigActivation(t, big)
		_, err := s.Store(ctxT(t), a, store.UserContext{})
		require.ErrorIs(t, err, kafkastore.ErrOversize)
		var oe *kafkastore.OversizeError
		require.ErrorAs(t, err, &oe)
		assert.Greater(t, oe.Size, kafkastore.DefaultMaxRequestSize)
		assert.Equal(t, kafkastore.DefaultMaxRequestSize, oe.Limit)
		assert.False(t, oe.Broker)
		assert.Contains(t, err.Error(), "WithMaxRequestSize", "the error says what to do")
		assert.Zero(t, primary.Len(), "nothing stored")
		assert.Zero(t, total(t, b, topic), "nothing published")
		assert.Equal(t, uint64(1), s.Stats().Oversize)
	})
	t.Run("RaisedLimit", func(t *testing.T) {
		s, topic := newStore(t, b, memory.New(), kafkastore.WithMaxRequestSize(4<<20))
		_, err := s.Store(ctxT(t), bigActivation(t, big), store.UserContext{})
		require.NoError(t, err)
		assert.Equal(t, int64(1), total(t, b, topic), "a raised limit (and the topic created with it) takes the record")
		assert.Zero(t, s.Stats().Oversize)
	})
}

func TestStoreOversizeBrokerSide(t *testing.T) {
	b := kafkatest.Start(t)
	const topicLimit = 10_000
	newLimited := func(t *testing.T, opts ...kafkastore.Option) (*kafkastore.Store, string, *memory.Store, *logBuffer) {
		topic := kafkatest.Topic(t, "completed")
		b.CreateTopic(t, topic, 1, map[string]string{"max.message.bytes": "10000"})
		primary := memory.New()
		logs := &logBuffer{}
		all := append([]kafkastore.Option{kafkastore.WithBrokers(b.Addr()), kafkastore.WithTopic(topic), kafkastore.WithLogger(logs.logger())}, opts...)
		s, err := kafkastore.New(primary, all...)
		require.NoError(t, err)
		t.Cleanup(func() { s.Close() })
		w := logs.entries(t, slog.LevelWarn, "max.message.bytes")
		require.Len(t, w, 1, "New reports the topic's lower limit: %s", logs.String())
		assert.EqualValues(t, topicLimit, w[0]["topicMaxMessageBytes"])
		return s, topic, primary, logs
	}

	t.Run("ToPrimary", func(t *testing.T) {
		s, topic, primary, _ := newLimited(t)
		a := bigActivation(t, 2*topicLimit)
		_, err := s.Store(ctxT(t), a, store.UserContext{})
		require.NoError(t, err)
		_, err = primary.Get(ctxT(t), a.Namespace, a.ActivationID, store.UserContext{})
		require.NoError(t, err, "the record refused by the broker is in the primary")
		assert.Zero(t, total(t, b, topic))
		st := s.Stats()
		assert.Equal(t, uint64(1), st.Oversize)
		assert.Equal(t, uint64(1), st.OversizeToPrimary)
		assert.Zero(t, st.PublishFailures)
	})
	t.Run("Reject", func(t *testing.T) {
		s, topic, primary, _ := newLimited(t, kafkastore.WithOversizePolicy(kafkastore.OversizeReject))
		_, err := s.Store(ctxT(t), bigActivation(t, 2*topicLimit), store.UserContext{})
		require.ErrorIs(t, err, kafkastore.ErrOversize)
		var oe *kafkastore.OversizeError
		require.ErrorAs(t, err, &oe)
		assert.True(t, oe.Broker, "refused by the broker")
		assert.Contains(t, err.Error(), "max.message.bytes")
		assert.Zero(t, primary.Len())
		assert.Zero(t, total(t, b, topic))
	})
	t.Run("BatchTooLargeRecordsFit", func(t *testing.T) {
		// Records of 4 KB each fit the topic alone, but several share a
		// batch larger than its 10 000 bytes: none is oversize.
		s, topic, primary, logs := newLimited(t, kafkastore.WithLinger(20*time.Millisecond))
		const n = 8
		var wg sync.WaitGroup
		errs := make([]error, n)
		for i := range n {
			wg.Go(func() { _, errs[i] = s.Store(ctxT(t), bigActivation(t, 4000), store.UserContext{}) })
		}
		wg.Wait()
		for _, err := range errs {
			require.NoError(t, err)
		}
		assert.Equal(t, int64(n), total(t, b, topic), "every record published")
		assert.Zero(t, primary.Len(), "none went to the primary")
		assert.Zero(t, s.Stats().Oversize)
		assert.NotEmpty(t, logs.entries(t, slog.LevelInfo, "resending the record alone"), "the shared batch was refused: the test covers that path")
		assert.NotEmpty(t, logs.entries(t, slog.LevelInfo, "resending the record alone"), "the shared batch was refused: the test covers that path")
	})
}

func TestStoreBrokerUnreachable(t *testing.T) {
	addr := unreachable(t)
	const timeout = 500 * time.Millisecond

	t.Run("Error", func(t *testing.T) {
		var logs logBuffer
		primary := memory.New()
		s, err := kafkastore.New(primary, kafkastore.WithBrokers(addr), kafkastore.WithTopicCreation(false),
			kafkastore.WithPublishTimeout(timeout), kafkastore.WithLogger(logs.logger()))
		require.NoError(t, err, "without topic creation New does not contact the brokers")
		defer s.Close()
		a := activationtest.New("guest")
		start := time.Now()
		_, err = s.Store(ctxT(t), a, store.UserContext{})
		elapsed := time.Since(start)
		require.ErrorIs(t, err, kafkastore.ErrPublish)
		t.Log(err)
		var pe *kafkastore.PublishError
		require.ErrorAs(t, err, &pe)
		assert.Equal(t, a.DocID(), pe.DocID)
		assert.Contains(t, err.Error(), "not stored")
		assert.Contains(t, err.Error(), "WithFallbackToPrimary", "the error says what to do")
		assert.Less(t, elapsed, timeout+2*time.Second, "Store returns within its timeout")
		assert.Zero(t, primary.Len())
		assert.Equal(t, uint64(1), s.Stats().PublishFailures)
		e := logs.entries(t, slog.LevelError, "publish failed")
		require.Len(t, e, 1)
		assert.Equal(t, a.ActivationID, e[0]["activationId"])
		assert.Equal(t, "completed-others", e[0]["topic"])
		assert.NotEmpty(t, e[0]["error"])
	})
	t.Run("Fallback", func(t *testing.T) {
		var logs logBuffer
		primary := memory.New()
		s, err := kafkastore.New(primary, kafkastore.WithBrokers(addr), kafkastore.WithTopicCreation(false),
			kafkastore.WithPublishTimeout(timeout), kafkastore.WithFallbackToPrimary(true), kafkastore.WithLogger(logs.logger()))
		require.NoError(t, err)
		defer s.Close()
		a := activationtest.New("guest")
		_, err = s.Store(ctxT(t), a, store.UserContext{})
		require.NoError(t, err, "the fallback stored it")
		_, err = primary.Get(ctxT(t), a.Namespace, a.ActivationID, store.UserContext{})
		require.NoError(t, err)
		st := s.Stats()
		assert.Equal(t, uint64(1), st.Fallbacks)
		assert.Equal(t, uint64(1), st.PublishFailures)
		assert.Len(t, logs.entries(t, slog.LevelWarn, "fallback"), 1)
	})
	t.Run("FallbackFails", func(t *testing.T) {
		primary := &failingPrimary{mem: memory.New(), broken: true}
		s, err := kafkastore.New(primary, kafkastore.WithBrokers(addr), kafkastore.WithTopicCreation(false),
			kafkastore.WithPublishTimeout(timeout), kafkastore.WithFallbackToPrimary(true))
		require.NoError(t, err)
		defer s.Close()
		_, err = s.Store(ctxT(t), activationtest.New("guest"), store.UserContext{})
		require.ErrorIs(t, err, kafkastore.ErrPublish)
		require.ErrorIs(t, err, errPrimaryDown)
		assert.Contains(t, err.Error(), "primary instead failed")
	})
	t.Run("New", func(t *testing.T) {
		start := time.Now()
		_, err := kafkastore.New(memory.New(), kafkastore.WithBrokers(addr), kafkastore.WithPublishTimeout(timeout))
		require.Error(t, err, "New creates the topic, so it needs the brokers")
		t.Log(err)
		assert.Less(t, time.Since(start), timeout+2*time.Second)
		assert.Contains(t, err.Error(), "WithTopicCreation(false)", "the error says what to do")
	})
}

func TestStoreBrokerGoesAway(t *testing.T) {
	b, err := kafkatest.New()
	require.NoError(t, err)
	primary := memory.New()
	topic := kafkatest.Topic(t, "completed")
	s, err := kafkastore.New(primary, kafkastore.WithBrokers(b.Addr()), kafkastore.WithTopic(topic),
		kafkastore.WithPublishTimeout(time.Second), kafkastore.WithFallbackToPrimary(true))
	require.NoError(t, err)
	_, err = s.Store(ctxT(t), activationtest.New("guest"), store.UserContext{})
	require.NoError(t, err)
	b.Close()

	a := activationtest.New("guest")
	start := time.Now()
	_, err = s.Store(ctxT(t), a, store.UserContext{})
	require.NoError(t, err, "stored in the primary by the fallback")
	assert.Less(t, time.Since(start), 4*time.Second, "Store gives up on Kafka within its timeout")
	_, err = primary.Get(ctxT(t), a.Namespace, a.ActivationID, store.UserContext{})
	require.NoError(t, err)
	assert.Equal(t, uint64(1), s.Stats().Fallbacks)

	start = time.Now()
	_ = s.Close() // may report the record still unacknowledged
	assert.Less(t, time.Since(start), 4*time.Second, "Close is bounded")
}

func TestStoreHonoursContext(t *testing.T) {
	b := kafkatest.Start(t)
	s, topic := newStore(t, b, memory.New())
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := s.Store(ctx, activationtest.New("guest"), store.UserContext{})
	require.ErrorIs(t, err, context.Canceled)
	assert.Zero(t, total(t, b, topic), "a cancelled Store publishes nothing")
}

func TestStoreConcurrent(t *testing.T) {
	b := kafkatest.Start(t)
	s, topic := newStore(t, b, memory.New())
	const callers, each = 64, 20
	var wg sync.WaitGroup
	errs := make(chan error, callers*each)
	for range callers {
		wg.Go(func() {
			for range each {
				if _, err := s.Store(ctxT(t), activationtest.New("guest"), store.UserContext{}); err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	assert.Equal(t, int64(callers*each), total(t, b, topic))
	st := s.Stats()
	assert.Equal(t, uint64(callers*each), st.Published)
	assert.Equal(t, uint64(callers*each), st.PublishLatency.Count)
	assert.LessOrEqual(t, st.PublishLatency.P50, st.PublishLatency.P99)
	assert.LessOrEqual(t, st.PublishLatency.P99, st.PublishLatency.Max)
}

func TestNewWarnsOnceWhenMaxRequestSizeIsBelowTheLimit(t *testing.T) {
	b := kafkatest.Start(t)
	var logs logBuffer
	s, _ := newStore(t, b, memory.New(), kafkastore.WithMaxRequestSize(1000), kafkastore.WithLogger(logs.logger()),
		kafkastore.WithOversizePolicy(kafkastore.OversizeReject))
	w := logs.entries(t, slog.LevelWarn, "max request size")
	require.Len(t, w, 1, "exactly one warning: %s", logs.String())
	assert.EqualValues(t, 1000, w[0]["configured"])
	assert.EqualValues(t, kafkastore.DefaultMaxRequestSize, w[0]["using"])

	_, err := s.Store(ctxT(t), bigActivation(t, 100_000), store.UserContext{})
	require.NoError(t, err, "the activation limit applies, not the configured 1000 bytes")
	assert.Len(t, logs.entries(t, slog.LevelWarn, "max request size"), 1, "no further warning")
}

func TestNewCreatesTopic(t *testing.T) {
	b := kafkatest.Start(t)
	s, topic := newStore(t, b, memory.New(), kafkastore.WithTopicPartitions(3), kafkastore.WithTopicRetention(48*time.Hour))
	assert.Len(t, endOffsets(t, b, topic), 3, "partitions")
	cfg := describeTopic(t, b, topic)
	assert.Equal(t, "172800000", cfg["retention.ms"])
	assert.Equal(t, "1054644", cfg["max.message.bytes"], "max.message.bytes follows the max request size")

	// A second store on the existing topic is fine.
	s2, err := kafkastore.New(memory.New(), kafkastore.WithBrokers(b.Addr()), kafkastore.WithTopic(topic))
	require.NoError(t, err)
	_, err = s2.Store(ctxT(t), activationtest.New("guest"), store.UserContext{})
	require.NoError(t, err)
	require.NoError(t, s2.Close())
	_, err = s.Store(ctxT(t), activationtest.New("guest"), store.UserContext{})
	require.NoError(t, err)
	assert.Equal(t, int64(2), total(t, b, topic))
}

func TestNewDefaultTopicRetention(t *testing.T) {
	b := kafkatest.Start(t)
	_, topic := newStore(t, b, memory.New())
	cfg := describeTopic(t, b, topic)
	assert.Equal(t, "604800000", cfg["retention.ms"], "7 days by default, not OpenWhisk's 1 hour")
	assert.Len(t, endOffsets(t, b, topic), kafkastore.DefaultTopicPartitions)
}

func describeTopic(t *testing.T, b *kafkatest.Broker, topic string) map[string]string {
	t.Helper()
	client := &kafka.Client{Addr: kafka.TCP(b.Addr()), Transport: &kafka.Transport{}}
	res, err := client.DescribeConfigs(ctxT(t), &kafka.DescribeConfigsRequest{Resources: []kafka.DescribeConfigRequestResource{{
		ResourceType: kafka.ResourceTypeTopic, ResourceName: topic,
	}}})
	require.NoError(t, err)
	out := map[string]string{}
	for _, r := range res.Resources {
		require.NoError(t, r.Error)
		for _, e := range r.ConfigEntries {
			out[e.ConfigName] = e.ConfigValue
		}
	}
	return out
}

func TestNewRejectsBadConfig(t *testing.T) {
	for name, opts := range map[string][]kafkastore.Option{
		"no brokers":       nil,
		"bad topic":        {kafkastore.WithBrokers("127.0.0.1:1"), kafkastore.WithTopic("a/b")},
		"zero size":        {kafkastore.WithBrokers("127.0.0.1:1"), kafkastore.WithMaxRequestSize(0)},
		"zero timeout":     {kafkastore.WithBrokers("127.0.0.1:1"), kafkastore.WithPublishTimeout(0)},
		"negative linger":  {kafkastore.WithBrokers("127.0.0.1:1"), kafkastore.WithLinger(-1)},
		"zero partitions":  {kafkastore.WithBrokers("127.0.0.1:1"), kafkastore.WithTopicPartitions(0)},
		"zero retention":   {kafkastore.WithBrokers("127.0.0.1:1"), kafkastore.WithTopicRetention(0)},
		"unknown policy":   {kafkastore.WithBrokers("127.0.0.1:1"), kafkastore.WithOversizePolicy(7)},
		"zero option":      {kafkastore.WithBrokers("127.0.0.1:1"), kafkastore.SharedOption{}},
		"nil option":       {kafkastore.WithBrokers("127.0.0.1:1"), nil},
		"zero replication": {kafkastore.WithBrokers("127.0.0.1:1"), kafkastore.WithTopicReplicationFactor(0)},
	} {
		_, err := kafkastore.New(memory.New(), opts...)
		assert.ErrorIs(t, err, kafkastore.ErrConfig, name)
	}
	_, err := kafkastore.New(nil, kafkastore.WithBrokers("127.0.0.1:1"))
	assert.ErrorIs(t, err, kafkastore.ErrConfig, "nil primary")
}

func TestSASLSecretsStayOutOfErrorsAndLogs(t *testing.T) {
	b := kafkatest.Start(t) // without SASL: the handshake fails
	const secret = "s3cr3t-p4ssw0rd"
	var logs logBuffer
	_, err := kafkastore.New(memory.New(), kafkastore.WithBrokers(b.Addr()), kafkastore.WithPublishTimeout(time.Second),
		kafkastore.WithSASL(plain.Mechanism{Username: "user", Password: secret}),
		kafkastore.WithLogger(slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))))
	require.Error(t, err, "the broker does not speak SASL")
	t.Log(err)
	assert.NotContains(t, err.Error(), secret)
	assert.NotContains(t, logs.String(), secret)
}

func TestCloseTwiceAndStoreAfterClose(t *testing.T) {
	b := kafkatest.Start(t)
	primary := memory.New()
	topic := kafkatest.Topic(t, "completed")
	s, err := kafkastore.New(primary, kafkastore.WithBrokers(b.Addr()), kafkastore.WithTopic(topic))
	require.NoError(t, err)
	_, err = s.Store(ctxT(t), activationtest.New("guest"), store.UserContext{})
	require.NoError(t, err)
	require.NoError(t, s.Close())
	require.NoError(t, s.Close(), "a second Close is a no-op")

	_, err = s.Store(ctxT(t), activationtest.New("guest"), store.UserContext{})
	require.ErrorIs(t, err, kafkastore.ErrClosed)
	_, err = s.Get(ctxT(t), "guest", newActivationID(t), store.UserContext{})
	require.ErrorIs(t, err, kafkastore.ErrClosed)
	_, err = s.List(ctxT(t), store.Query{Namespace: "guest"}, store.UserContext{})
	require.ErrorIs(t, err, kafkastore.ErrClosed)
	assert.Equal(t, int64(1), total(t, b, topic))
}

func TestCloseWaitsForStoresInProgress(t *testing.T) {
	b := kafkatest.Start(t)
	s, topic := newStore(t, b, memory.New(), kafkastore.WithLinger(50*time.Millisecond))
	const n = 16
	var wg sync.WaitGroup
	var mu sync.Mutex
	published := 0
	for range n {
		wg.Go(func() {
			_, err := s.Store(ctxT(t), activationtest.New("guest"), store.UserContext{})
			if err == nil {
				mu.Lock()
				published++
				mu.Unlock()
			} else {
				assert.ErrorIs(t, err, kafkastore.ErrClosed)
			}
		})
	}
	time.Sleep(10 * time.Millisecond)
	require.NoError(t, s.Close())
	wg.Wait()
	assert.Equal(t, int64(published), total(t, b, topic), "every Store that returned nil is in Kafka")
}

func TestReadsAndDeletesGoToThePrimary(t *testing.T) {
	b := kafkatest.Start(t)
	primary := memory.New()
	a := activationtest.New("guest")
	_, err := primary.Store(ctxT(t), a, store.UserContext{})
	require.NoError(t, err)
	s, _ := newStore(t, b, primary)
	got, err := s.Get(ctxT(t), a.Namespace, a.ActivationID, store.UserContext{})
	require.NoError(t, err)
	assert.Equal(t, a.DocID(), got.DocID())
	n, err := s.Count(ctxT(t), store.Query{Namespace: a.Namespace}, store.UserContext{})
	require.NoError(t, err)
	assert.Equal(t, 1, n)
	l, err := s.List(ctxT(t), store.Query{Namespace: a.Namespace}, store.UserContext{})
	require.NoError(t, err)
	assert.Len(t, l, 1)
	require.NoError(t, s.Delete(ctxT(t), a.Namespace, a.ActivationID, store.UserContext{}))
	assert.Zero(t, primary.Len())
}
