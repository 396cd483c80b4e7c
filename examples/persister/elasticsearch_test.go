package main_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/go-whisk/activationstore/internal/kafkatest"
	"github.com/go-whisk/activationstore/internal/searchtest"
	"github.com/go-whisk/activationstore/internal/servicetest"
	"github.com/go-whisk/activationstore/primary/elasticsearch"
	"github.com/go-whisk/activationstore/store"
)

// The service drains the topics into Elasticsearch/OpenSearch when given
// -elasticsearch (here from ELASTICSEARCH_URL, credentials included, behind
// the harness's Basic-auth proxy).
func TestServiceDrainsIntoElasticsearch(t *testing.T) {
	broker := kafkatest.Start(t)
	topic := kafkatest.Topic(t, "completed")
	broker.CreateTopic(t, topic, 2, nil)
	srv := searchtest.Start(t, searchtest.WithBasicAuth())
	pattern := srv.IndexPrefix(t) + "%s"
	esURL := strings.Replace(srv.URL(), "://", "://"+srv.Username()+":"+srv.Password()+"@", 1)

	svc := servicetest.Start(t, servicetest.Build(t, true), []string{"PERSISTER_BROKERS=" + broker.Addr(), "ELASTICSEARCH_URL=" + esURL},
		"-index-pattern", pattern, "-listen", "127.0.0.1:0", "-group-id", "svc-es-"+strings.TrimSuffix(pattern, "-%s"),
		"-session-timeout", "6s", "-heartbeat", "500ms", "-batch-wait", "10ms",
		"-topic-pattern", "^"+topic+"$", "-dead-letter-topic", kafkatest.Topic(t, "dlq"))
	svc.Eventually(t, 60*time.Second, "/ready to answer 200", ready(svc, t))

	const n = 60
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	publish(ctx, t, broker.Addr(), topic, n)
	svc.Eventually(t, 60*time.Second, "60 activations persisted per /metrics", func() bool {
		_, metrics := svc.Get(t, "/metrics")
		return strings.Contains(metrics, "activation_persister_persisted_total 60")
	})
	es, err := elasticsearch.New(ctx, esURL, elasticsearch.WithIndexPattern(pattern))
	require.NoError(t, err)
	defer es.Close()
	count, err := es.Count(ctx, store.Query{Namespace: "guest"}, store.UserContext{})
	require.NoError(t, err)
	assert.Equal(t, n, count, "every published activation is in the guest index")
	code, _ := svc.Get(t, "/ready")
	assert.Equal(t, http.StatusOK, code)

	require.NoError(t, svc.Terminate(t, 30*time.Second), "SIGTERM drains and exits 0")
	for _, line := range svc.Lines() {
		assert.NotContains(t, line, srv.Password(), "no credential in logs")
	}
}
