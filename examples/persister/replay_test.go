package main_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/go-whisk/activationstore/codec"
	"github.com/go-whisk/activationstore/internal/activationtest"
	"github.com/go-whisk/activationstore/internal/couchtest"
	"github.com/go-whisk/activationstore/internal/kafkatest"
	"github.com/go-whisk/activationstore/internal/servicetest"
	"github.com/go-whisk/activationstore/kafkastore/persister"
	"github.com/go-whisk/activationstore/primary/couchdb"
	"github.com/go-whisk/activationstore/store"
)

const replayCmd = "replay-dead-letters"

// poisonDesignDoc refuses activations whose result says poison: CouchDB
// rejects them one by one in _bulk_docs, which the couchdb primary reports
// as store.ErrInvalid, so the persister dead-letters them.
const poisonDesignDoc = `{"validate_doc_update": "function (newDoc) { ` +
	`if (newDoc.response && newDoc.response.result && newDoc.response.result.poison) { ` +
	`throw({forbidden: 'poison activation'}); } }"}`

// TestReplayDeadLettersEndToEnd: activations the database refuses are
// dead-lettered; once the refusal is lifted, replay-dead-letters (run as a
// process) copies them back to their topic and the service persists them;
// a second replay only meets conflicts.
func TestReplayDeadLettersEndToEnd(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	broker := kafkatest.Start(t)
	topic := kafkatest.Topic(t, "completed")
	broker.CreateTopic(t, topic, 2, nil)
	dlq := kafkatest.Topic(t, "dead-letter")
	couchURL, db := validatingCouchURL(t), couchtest.DBName(t)
	require.NoError(t, couchtest.CreateDB(ctx, couchURL, db))
	status, reply, err := couchtest.Do(ctx, http.MethodPut, couchURL, "/"+db+"/_design/poison", []byte(poisonDesignDoc))
	require.NoError(t, err)
	require.Equal(t, http.StatusCreated, status, "install the poison design document: %s", reply)

	bin := servicetest.Build(t, true)
	env := []string{"PERSISTER_BROKERS=" + broker.Addr(), "COUCHDB_URL=" + couchURL, "PERSISTER_DEAD_LETTER_TOPIC=" + dlq}
	svc := servicetest.Start(t, bin, env, "-db", db, "-listen", "127.0.0.1:0", "-group-id", "replay-"+db,
		"-client-id", "replay-test", "-session-timeout", "6s", "-heartbeat", "500ms", "-batch-wait", "10ms",
		"-topic-pattern", "^"+topic+"$")
	svc.Eventually(t, 60*time.Second, "/ready to answer 200", ready(svc, t))

	const good, poison = 20, 6
	var msgs []kafka.Message
	var poisoned []*store.Activation
	for i := range good + poison {
		a := activationtest.New("guest")
		key := fmt.Sprintf("good-%d", i)
		if i >= good {
			a.Response.Result = json.RawMessage(fmt.Sprintf(`{"poison":true,"i":%d}`, i))
			poisoned = append(poisoned, a)
			key = fmt.Sprintf("poison-%d", i)
		}
		v, err := codec.MarshalResultMessage(codec.TransactionID{ID: "sid_replay", Start: time.Now()}, a)
		require.NoError(t, err)
		msgs = append(msgs, kafka.Message{Key: []byte(key), Value: v,
			Headers: []kafka.Header{{Key: "x-trace", Value: []byte(key)}}})
	}
	w := &kafka.Writer{Addr: kafka.TCP(broker.Addr()), Topic: topic, Balancer: &kafka.Hash{},
		BatchTimeout: time.Millisecond, RequiredAcks: kafka.RequireAll}
	defer w.Close()
	require.NoError(t, w.WriteMessages(ctx, msgs...))

	counters := func() map[string]float64 {
		m, err := svc.Metrics("activation_persister_")
		require.NoError(t, err)
		return m
	}
	svc.Eventually(t, 60*time.Second, "good activations persisted and poison ones dead-lettered", func() bool {
		m := counters()
		return m["activation_persister_persisted_total"] == good && m["activation_persister_dead_lettered_total"] == poison
	})
	primary, err := couchdb.New(ctx, couchURL, db)
	require.NoError(t, err)
	defer primary.Close()
	countGuest := func() int {
		n, err := primary.Count(ctx, store.Query{Namespace: "guest"}, store.UserContext{})
		require.NoError(t, err)
		return n
	}
	require.Equal(t, good, countGuest())

	// The fix: lift the refusal.
	status, reply, err = couchtest.Do(ctx, http.MethodGet, couchURL, "/"+db+"/_design/poison", nil)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, status, "%s", reply)
	var ddoc struct {
		Rev string `json:"_rev"`
	}
	require.NoError(t, json.Unmarshal(reply, &ddoc))
	status, reply, err = couchtest.Do(ctx, http.MethodDelete, couchURL, "/"+db+"/_design/poison?rev="+url.QueryEscape(ddoc.Rev), nil)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, status, "%s", reply)

	before, err := broker.EndOffsets(ctx, topic)
	require.NoError(t, err)

	// A dry run counts and copies nothing.
	out, err := servicetest.Exec(t, bin, env, 60*time.Second, replayCmd, "-dry-run")
	require.NoError(t, err, out)
	t.Logf("%s -dry-run:\n%s", replayCmd, out)
	assert.Contains(t, out, fmt.Sprintf("read %d records", poison))
	assert.Regexp(t, regexp.MustCompile(`(?m)^invalid\s+`+regexp.QuoteMeta(topic)+`\s+`+fmt.Sprint(poison)+`$`), out,
		"the summary counts by reason and source topic")
	assert.Contains(t, out, fmt.Sprintf("dry run: copied nothing; would copy %d records to their source topics", poison))
	after, err := broker.EndOffsets(ctx, topic)
	require.NoError(t, err)
	assert.Equal(t, before, after, "a dry run publishes nothing")

	// The replay: copies persisted, with their key and original headers.
	out, err = servicetest.Exec(t, bin, env, 60*time.Second, replayCmd)
	require.NoError(t, err, out)
	assert.Contains(t, out, fmt.Sprintf("copied %d records to their source topics", poison))
	svc.Eventually(t, 60*time.Second, "replayed activations persisted", func() bool {
		return counters()["activation_persister_persisted_total"] == good+poison
	})
	assert.Equal(t, float64(poison), counters()["activation_persister_dead_lettered_total"], "nothing dead-lettered again")
	assert.Equal(t, good+poison, countGuest())
	for _, a := range poisoned {
		got, err := primary.Get(ctx, a.Namespace, a.ActivationID, store.UserContext{})
		require.NoError(t, err)
		assert.JSONEq(t, string(a.Response.Result), string(got.Response.Result))
	}
	copies := readRange(ctx, t, broker, topic, before)
	require.Len(t, copies, poison)
	for _, m := range copies {
		assert.True(t, strings.HasPrefix(string(m.Key), "poison-"), "the copy keeps its key: %q", m.Key)
		require.Len(t, m.Headers, 1, "only the original headers: %v", m.Headers)
		assert.Equal(t, "x-trace", m.Headers[0].Key)
		assert.Equal(t, string(m.Key), string(m.Headers[0].Value))
	}

	// Replaying again is harmless: conflicts, one document per activation.
	out, err = servicetest.Exec(t, bin, env, 60*time.Second, replayCmd)
	require.NoError(t, err, out)
	assert.Contains(t, out, fmt.Sprintf("copied %d records", poison))
	svc.Eventually(t, 60*time.Second, "the second replay met conflicts", func() bool {
		return counters()["activation_persister_conflicts_total"] == poison
	})
	assert.Equal(t, float64(good+poison), counters()["activation_persister_persisted_total"])
	assert.Equal(t, good+poison, countGuest(), "no duplicate documents")

	require.NoError(t, svc.Terminate(t, 30*time.Second))
}

// validatingCouchURL returns a CouchDB that runs validate_doc_update: the
// server COUCHDB_URL names, or a test server of this test's own (the shared
// one does not run it).
func validatingCouchURL(t *testing.T) string {
	if os.Getenv(couchtest.EnvURL) != "" {
		return couchtest.URL(t)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	srv, err := couchtest.Start(ctx, couchtest.WithValidation())
	require.NoError(t, err, "start a CouchDB test server that validates")
	t.Cleanup(srv.Close)
	return srv.URL()
}

// TestReplayDeadLettersSelection runs the command over dead letters
// written by hand: offset and time ranges, -reason, -to, records with no
// source topic, and a failed publish.
func TestReplayDeadLettersSelection(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	broker := kafkatest.Start(t)
	dlq := kafkatest.Topic(t, "dead-letter")
	src := kafkatest.Topic(t, "src")
	broker.CreateTopic(t, dlq, 2, nil)
	broker.CreateTopic(t, src, 1, nil)
	// Recent enough for the broker's retention (7 days by default): Apache
	// Kafka deletes records whose timestamps are older.
	t0 := time.Now().Add(-24 * time.Hour).Truncate(time.Hour)

	// Partition 0: six records an hour apart; offset 2 is malformed,
	// offset 4 names no source topic. Partition 1: three, an hour apart.
	deadLetter := func(key string, at time.Time, reason, source string) kafka.Message {
		h := []kafka.Header{{Key: "x-trace", Value: []byte(key)},
			{Key: persister.DeadLetterHeaderReason, Value: []byte(reason)},
			{Key: persister.DeadLetterHeaderPartition, Value: []byte("0")},
			{Key: persister.DeadLetterHeaderOffset, Value: []byte("7")},
			{Key: persister.DeadLetterHeaderError, Value: []byte("refused")}}
		if source != "" {
			h = append(h, kafka.Header{Key: persister.DeadLetterHeaderTopic, Value: []byte(source)})
		}
		return kafka.Message{Key: []byte(key), Value: []byte(`{"v":"` + key + `"}`), Time: at, Headers: h}
	}
	var p0, p1 []kafka.Message
	for i := range 6 {
		reason, source := persister.DeadLetterInvalid, src
		if i == 2 {
			reason = persister.DeadLetterMalformed
		}
		if i == 4 {
			source = ""
		}
		p0 = append(p0, deadLetter(fmt.Sprintf("p0-%d", i), t0.Add(time.Duration(i)*time.Hour), reason, source))
	}
	for i := range 3 {
		p1 = append(p1, deadLetter(fmt.Sprintf("p1-%d", i), t0.Add(time.Duration(i)*time.Hour), persister.DeadLetterInvalid, src))
	}
	writePartition(ctx, t, broker.Addr(), dlq, 0, p0)
	writePartition(ctx, t, broker.Addr(), dlq, 1, p1)

	bin := servicetest.Build(t, true)
	env := []string{"PERSISTER_BROKERS=" + broker.Addr(), "PERSISTER_DEAD_LETTER_TOPIC=" + dlq}
	replay := func(args ...string) (string, error) {
		return servicetest.Exec(t, bin, env, 60*time.Second, append([]string{replayCmd}, args...)...)
	}
	// keys replays into a new topic and returns the keys of its records.
	keys := func(args ...string) []string {
		t.Helper()
		to := kafkatest.Topic(t, "to")
		broker.CreateTopic(t, to, 1, nil)
		out, err := replay(append(args, "-to", to)...)
		require.NoError(t, err, out)
		var ks []string
		for _, m := range readRange(ctx, t, broker, to, map[int]int64{0: 0}) {
			ks = append(ks, string(m.Key))
			assert.Equal(t, []kafka.Header{{Key: "x-trace", Value: m.Key}}, m.Headers, "dead-letter headers dropped")
		}
		return ks
	}

	t.Run("dry run summary", func(t *testing.T) {
		out, err := replay("-dry-run")
		require.NoError(t, err, out)
		assert.Contains(t, out, "read 9 records")
		assert.Regexp(t, `(?m)^invalid\s+\(none\)\s+1$`, out)
		assert.Regexp(t, `(?m)^invalid\s+`+regexp.QuoteMeta(src)+`\s+7$`, out)
		assert.Regexp(t, `(?m)^malformed\s+`+regexp.QuoteMeta(src)+`\s+1$`, out)
		assert.Contains(t, out, "would copy 8 records")
		end, err := broker.EndOffsets(ctx, src)
		require.NoError(t, err)
		assert.Equal(t, map[int]int64{0: 0}, end, "a dry run copies nothing")
	})
	t.Run("offset range of one partition", func(t *testing.T) {
		assert.Equal(t, []string{"p0-1", "p0-2", "p0-3"}, keys("-from-offset", "0=1", "-to-offset", "0=4"))
	})
	t.Run("offset range of every partition", func(t *testing.T) {
		assert.ElementsMatch(t, []string{"p0-1", "p0-2", "p1-1", "p1-2"}, keys("-from-offset", "1", "-to-offset", "3"))
	})
	t.Run("time range and reason", func(t *testing.T) {
		assert.ElementsMatch(t, []string{"p0-1", "p0-3", "p1-1", "p1-2"}, keys("-reason", "invalid",
			"-since", t0.Add(time.Hour).Format(time.RFC3339), "-until", t0.Add(4*time.Hour).Format(time.RFC3339)))
	})
	t.Run("to the source topics", func(t *testing.T) {
		out, err := replay()
		require.Error(t, err, "a record with no source topic is not copied: the command says so")
		assert.Contains(t, out, "copied 8 records")
		assert.Contains(t, out, "1 records name no source topic")
		var ks []string
		for _, m := range readRange(ctx, t, broker, src, map[int]int64{0: 0}) {
			ks = append(ks, string(m.Key))
		}
		assert.ElementsMatch(t, []string{"p0-0", "p0-1", "p0-2", "p0-3", "p0-5", "p1-0", "p1-1", "p1-2"}, ks)
	})
	t.Run("publish failure", func(t *testing.T) {
		out, err := replay("-to", kafkatest.Topic(t, "missing"), "-to-offset", "0=2")
		require.Error(t, err, "publishing to a missing topic fails: %s", out)
		assert.Contains(t, out, "copied 0 of 2 selected records")
	})
	t.Run("bad flags", func(t *testing.T) {
		for _, args := range [][]string{
			{"-since", "yesterday"}, {"-from-offset", "0=x"}, {"-from-offset", "7=0"}, {"-reason", "bored"}, {"-to", dlq},
			{"-since", t0.Format(time.RFC3339), "-until", t0.Format(time.RFC3339)},
		} {
			out, err := replay(args...)
			assert.Error(t, err, "%v must be refused: %s", args, out)
		}
	})
}

// writePartition writes msgs to one partition with their own timestamps.
func writePartition(ctx context.Context, t *testing.T, addr, topic string, partition int, msgs []kafka.Message) {
	t.Helper()
	conn, err := kafka.DialLeader(ctx, "tcp", addr, topic, partition)
	require.NoError(t, err)
	defer conn.Close()
	_, err = conn.WriteMessages(msgs...)
	require.NoError(t, err)
}

// readRange reads topic from the given offsets to its end offsets now.
func readRange(ctx context.Context, t *testing.T, broker *kafkatest.Broker, topic string, from map[int]int64) []kafka.Message {
	t.Helper()
	ends, err := broker.EndOffsets(ctx, topic)
	require.NoError(t, err)
	var out []kafka.Message
	for p, last := range ends {
		first := from[p]
		if first >= last {
			continue
		}
		r := kafka.NewReader(kafka.ReaderConfig{Brokers: []string{broker.Addr()}, Topic: topic, Partition: p, MaxWait: 100 * time.Millisecond})
		require.NoError(t, r.SetOffset(first))
		for {
			m, err := r.FetchMessage(ctx)
			require.NoError(t, err)
			out = append(out, m)
			if m.Offset >= last-1 {
				break
			}
		}
		require.NoError(t, r.Close())
	}
	return out
}
