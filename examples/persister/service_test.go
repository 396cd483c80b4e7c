package main_test

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/go-whisk/activationstore/internal/couchtest"
	"github.com/go-whisk/activationstore/internal/kafkatest"
	"github.com/go-whisk/activationstore/internal/searchtest"
	"github.com/go-whisk/activationstore/internal/servicetest"
	"github.com/go-whisk/activationstore/kafkastore"
	"github.com/go-whisk/activationstore/primary/couchdb"
	"github.com/go-whisk/activationstore/store"
)

// TestMain stops the shared test servers (CouchDB, and Apache Kafka under
// KAFKATEST=apache) with the test binary.
func TestMain(m *testing.M) {
	code := m.Run()
	kafkatest.Stop()
	couchtest.Stop()
	searchtest.Stop()
	os.Exit(code)
}

func TestServiceEndpointsAndGracefulStop(t *testing.T) {
	broker := kafkatest.Start(t)
	topic := kafkatest.Topic(t, "completed")
	broker.CreateTopic(t, topic, 2, nil)
	couchURL, db := couchtest.URL(t), couchtest.DBName(t)

	svc := servicetest.Start(t, servicetest.Build(t, true), []string{"PERSISTER_BROKERS=" + broker.Addr(), "COUCHDB_URL=" + couchURL},
		"-db", db, "-listen", "127.0.0.1:0", "-group-id", "svc-"+db, "-client-id", "svc-test",
		"-session-timeout", "6s", "-heartbeat", "500ms", "-batch-wait", "10ms",
		"-topic-pattern", "^"+topic+"$", "-dead-letter-topic", kafkatest.Topic(t, "dlq"))

	code, body := svc.Get(t, "/ping")
	assert.Equal(t, http.StatusOK, code)
	assert.Equal(t, "pong", body)
	svc.Eventually(t, 30*time.Second, "/ready to answer 200", ready(svc, t))

	const n = 50
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	publish(ctx, t, broker.Addr(), topic, n)
	// Acks whose writer decided not to store them: committed, not stored.
	const notStored = 3
	publish(ctx, t, broker.Addr(), topic, notStored, kafka.Header{Key: kafkastore.HeaderStoreSkip, Value: []byte(kafkastore.StoreSkipLevel)})

	svc.Eventually(t, 30*time.Second, "50 activations persisted and 3 store-skipped per /metrics", func() bool {
		_, metrics := svc.Get(t, "/metrics")
		return strings.Contains(metrics, "activation_persister_persisted_total 50") &&
			strings.Contains(metrics, "activation_persister_store_skipped_total 3")
	})
	_, metrics := svc.Get(t, "/metrics")
	for _, want := range []string{
		"activation_persister_conflicts_total 0", "activation_persister_retries_total",
		"activation_persister_dead_lettered_total 0", "activation_persister_batch_seconds_total",
		"activation_persister_ready 1", `activation_persister_lag{partition="0",topic="` + topic + `"}`,
		"activation_persister_record_age_seconds_count 50", `activation_persister_record_age_seconds_bucket{le="+Inf"} 50`,
	} {
		assert.Contains(t, metrics, want)
	}

	primary, err := couchdb.New(ctx, couchURL, db)
	require.NoError(t, err)
	defer primary.Close()
	count, err := primary.Count(ctx, store.Query{Namespace: "guest"}, store.UserContext{})
	require.NoError(t, err)
	assert.Equal(t, n, count, "every published activation is in CouchDB, none of those marked not to store")

	require.NoError(t, svc.Terminate(t, 30*time.Second), "SIGTERM drains and exits 0")
	assert.Len(t, logged(t, svc, "persister started"), 1, "the start is logged once (the library logs \"persister running\")")
	assert.Len(t, logged(t, svc, "persister running"), 1)
	for _, line := range svc.Lines() {
		var rec map[string]any
		require.NoError(t, json.Unmarshal([]byte(line), &rec), "every log line is JSON: %s", line)
		assert.NotContains(t, line, "secret", "no credential in logs")
	}
}
