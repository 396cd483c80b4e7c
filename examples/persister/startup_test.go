package main_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/go-whisk/activationstore/codec"
	"github.com/go-whisk/activationstore/internal/activationtest"
	"github.com/go-whisk/activationstore/internal/couchtest"
	"github.com/go-whisk/activationstore/internal/faultproxy"
	"github.com/go-whisk/activationstore/internal/kafkatest"
	"github.com/go-whisk/activationstore/internal/servicetest"
	"github.com/go-whisk/activationstore/primary/couchdb"
	"github.com/go-whisk/activationstore/store"
)

// The messages of the retries while the servers are down.
const (
	couchRetryMsg = "persister cannot open the CouchDB database yet; retrying"
	kafkaRetryMsg = "persister cannot create the dead-letter topic yet; retrying"
)

// logRecord is a JSON log line of the service.
type logRecord struct {
	Level   string `json:"level"`
	Msg     string `json:"msg"`
	Attempt int    `json:"attempt"`
	Err     string `json:"err"`
}

// logged returns the service's JSON log lines with message msg; every
// line must be JSON.
func logged(t *testing.T, svc *servicetest.Service, msg string) []logRecord {
	t.Helper()
	var out []logRecord
	for _, line := range svc.Lines() {
		var rec logRecord
		require.NoError(t, json.Unmarshal([]byte(line), &rec), "every log line is JSON: %s", line)
		if rec.Msg == msg {
			out = append(out, rec)
		}
	}
	return out
}

// downProxy returns a proxy to target whose port is closed until Restore.
func downProxy(t *testing.T, target string) *faultproxy.Proxy {
	t.Helper()
	p := faultproxy.Start(t, target)
	p.Drop()
	return p
}

// withHost returns raw with its host replaced; user info is kept.
func withHost(t *testing.T, raw, host string) string {
	t.Helper()
	u, err := url.Parse(raw)
	require.NoError(t, err)
	u.Host = host
	return u.String()
}

func ready(svc *servicetest.Service, t *testing.T) func() bool {
	return func() bool {
		code, _ := svc.Get(t, "/ready")
		return code == http.StatusOK
	}
}

// TestServiceWaitsForCouchDBAndKafka starts the service with both servers
// down: it answers /ping, is not ready and keeps retrying; it becomes ready
// once both are up and then persists. A database lost later makes /ready
// answer 503 again.
func TestServiceWaitsForCouchDBAndKafka(t *testing.T) {
	broker := kafkatest.Start(t)
	topic := kafkatest.Topic(t, "completed")
	broker.CreateTopic(t, topic, 1, nil)
	couchURL, db := couchtest.URL(t), couchtest.DBName(t)
	couchProxy := downProxy(t, hostOf(t, couchURL))
	kafkaProxy := downProxy(t, broker.Addr())

	svc := servicetest.Start(t, servicetest.Build(t, true),
		[]string{"PERSISTER_BROKERS=" + kafkaProxy.Addr(), "COUCHDB_URL=" + withHost(t, couchURL, couchProxy.Addr())},
		"-db", db, "-listen", "127.0.0.1:0", "-group-id", "wait-"+db, "-client-id", "wait-test",
		"-session-timeout", "6s", "-heartbeat", "500ms", "-batch-wait", "10ms",
		"-topic-pattern", "^"+topic+"$", "-dead-letter-topic", kafkatest.Topic(t, "dlq"))

	code, body := svc.Get(t, "/ping")
	assert.Equal(t, http.StatusOK, code, "/ping answers during the wait")
	assert.Equal(t, "pong", body)
	svc.Eventually(t, 30*time.Second, "three failed CouchDB attempts logged", func() bool {
		return len(logged(t, svc, couchRetryMsg)) >= 3
	})
	code, body = svc.Get(t, "/ready")
	assert.Equal(t, http.StatusServiceUnavailable, code)
	assert.Contains(t, body, "waiting for CouchDB")
	exited, err := svc.Wait(100 * time.Millisecond)
	require.False(t, exited, "the service keeps waiting rather than exiting (%v)", err)
	for i, rec := range logged(t, svc, couchRetryMsg) {
		assert.Equal(t, "WARN", rec.Level)
		assert.Equal(t, i+1, rec.Attempt, "attempts are numbered")
		assert.Contains(t, rec.Err, "connection refused", "the warning says why")
	}

	// CouchDB up, Kafka still down: waiting for Kafka now.
	require.NoError(t, couchProxy.Restore())
	svc.Eventually(t, 30*time.Second, "a failed Kafka attempt logged after CouchDB answered", func() bool {
		return len(logged(t, svc, "persister reached CouchDB")) == 1 && len(logged(t, svc, kafkaRetryMsg)) >= 1
	})
	code, body = svc.Get(t, "/ready")
	assert.Equal(t, http.StatusServiceUnavailable, code)
	assert.Contains(t, body, "waiting for Kafka")
	for _, rec := range logged(t, svc, kafkaRetryMsg) {
		assert.Equal(t, "WARN", rec.Level)
		assert.NotEmpty(t, rec.Err)
	}

	require.NoError(t, kafkaProxy.Restore())
	svc.Eventually(t, 60*time.Second, "/ready to answer 200 once both servers are up", ready(svc, t))

	const n = 10
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	publish(ctx, t, broker.Addr(), topic, n)
	svc.Eventually(t, 30*time.Second, fmt.Sprintf("%d activations persisted", n), func() bool {
		m, err := svc.Metrics("activation_persister_")
		return err == nil && m["activation_persister_persisted_total"] == n
	})
	primary, err := couchdb.New(ctx, couchURL, db)
	require.NoError(t, err)
	defer primary.Close()
	count, err := primary.Count(ctx, store.Query{Namespace: "guest"}, store.UserContext{})
	require.NoError(t, err)
	assert.Equal(t, n, count)

	// The database lost after the start: /ready says so, and recovers.
	couchProxy.Drop()
	svc.Eventually(t, 30*time.Second, "/ready to answer 503 while CouchDB is down", func() bool {
		code, body := svc.Get(t, "/ready")
		return code == http.StatusServiceUnavailable && strings.Contains(body, "CouchDB does not answer")
	})
	require.NoError(t, couchProxy.Restore())
	svc.Eventually(t, 30*time.Second, "/ready to answer 200 again", ready(svc, t))

	require.NoError(t, svc.Terminate(t, 30*time.Second), "SIGTERM exits 0")
}

// TestServiceStopsWhileWaiting: SIGTERM while the service waits for a
// server exits 0 at once, and the retries' warnings carry no password.
func TestServiceStopsWhileWaiting(t *testing.T) {
	bin := servicetest.Build(t, true)
	const password = "s3cretpw"
	for _, tc := range []struct {
		name, retryMsg, notReady, stopped string
		env                               func(t *testing.T) []string
	}{{
		name: "CouchDB down", retryMsg: couchRetryMsg, notReady: "waiting for CouchDB",
		stopped: "persister stopped before CouchDB answered",
		env: func(t *testing.T) []string {
			broker := kafkatest.Start(t)
			couch := downProxy(t, "127.0.0.1:9")
			return []string{"PERSISTER_BROKERS=" + broker.Addr(), "COUCHDB_URL=http://persister:" + password + "@" + couch.Addr()}
		},
	}, {
		name: "Kafka down", retryMsg: kafkaRetryMsg, notReady: "waiting for Kafka",
		stopped: "persister stopped",
		env: func(t *testing.T) []string {
			kafka := downProxy(t, "127.0.0.1:9")
			return []string{"PERSISTER_BROKERS=" + kafka.Addr(), "COUCHDB_URL=" + couchtest.URL(t)}
		},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			svc := servicetest.Start(t, bin, tc.env(t), "-db", couchtest.DBName(t), "-listen", "127.0.0.1:0")
			svc.Eventually(t, 30*time.Second, "two failed attempts logged", func() bool {
				return len(logged(t, svc, tc.retryMsg)) >= 2
			})
			code, _ := svc.Get(t, "/ping")
			assert.Equal(t, http.StatusOK, code)
			code, body := svc.Get(t, "/ready")
			assert.Equal(t, http.StatusServiceUnavailable, code)
			assert.Contains(t, body, tc.notReady)

			start := time.Now()
			require.NoError(t, svc.Terminate(t, 10*time.Second), "SIGTERM during the wait exits 0")
			assert.Less(t, time.Since(start), 5*time.Second, "SIGTERM does not wait for the backoff")
			assert.NotContains(t, svc.Logs(), password, "no credential in logs")
			assert.Len(t, logged(t, svc, tc.stopped), 1, "the service logs its stop")
		})
	}
}

// TestServiceRejectsBadSettingsAtOnce: configuration errors exit non-zero
// at once, servers down or not.
func TestServiceRejectsBadSettingsAtOnce(t *testing.T) {
	bin := servicetest.Build(t, true)
	down := downProxy(t, "127.0.0.1:9").Addr()
	base := []string{"PERSISTER_BROKERS=" + down, "COUCHDB_URL=http://" + down}
	for _, tc := range []struct {
		name string
		env  []string
		args []string
		want string
	}{
		{"no brokers", []string{"PERSISTER_BROKERS=", "COUCHDB_URL=http://" + down}, nil, "PERSISTER_BROKERS"},
		{"no CouchDB", []string{"PERSISTER_BROKERS=" + down, "COUCHDB_URL="}, nil, "COUCHDB_URL"},
		{"bad variable", append(base, "PERSISTER_BATCH_WAIT=5"), nil, "PERSISTER_BATCH_WAIT"},
		{"bad flag", base, []string{"-batch-size", "many"}, "-batch-size"},
		{"unknown flag", base, []string{"-bogus"}, "-bogus"},
		{"bad URL", base, []string{"-couchdb", "127.0.0.1:5984"}, "-couchdb"},
		{"bad database name", base, []string{"-db", "Activations", "-listen", "127.0.0.1:0"}, "database name"},
		{"bad log level", base, []string{"-log-level", "loud"}, "-log-level"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := servicetest.Exec(t, bin, tc.env, 20*time.Second, tc.args...)
			require.Error(t, err, "the service must not start: %s", out)
			assert.Contains(t, out, tc.want)
		})
	}
}

func hostOf(t *testing.T, raw string) string {
	t.Helper()
	u, err := url.Parse(raw)
	require.NoError(t, err)
	return u.Host
}

// publish writes n result messages of new activations of namespace guest,
// with headers.
func publish(ctx context.Context, t *testing.T, addr, topic string, n int, headers ...kafka.Header) {
	t.Helper()
	// A transport of its own: the shared default one caches metadata for
	// 6 s, from before the topic existed.
	tr := &kafka.Transport{}
	defer tr.CloseIdleConnections()
	w := &kafka.Writer{Addr: kafka.TCP(addr), Topic: topic, Transport: tr, BatchTimeout: time.Millisecond, RequiredAcks: kafka.RequireAll}
	defer w.Close()
	msgs := make([]kafka.Message, n)
	for i := range msgs {
		v, err := codec.MarshalResultMessage(codec.TransactionID{ID: "sid_test", Start: time.Now()}, activationtest.New("guest"))
		require.NoError(t, err)
		msgs[i] = kafka.Message{Key: []byte(fmt.Sprint(i)), Value: v, Headers: headers}
	}
	require.NoError(t, w.WriteMessages(ctx, msgs...))
}
