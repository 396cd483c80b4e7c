package storemetrics_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/go-whisk/activationstore/internal/activationtest"
	"github.com/go-whisk/activationstore/internal/childproc"
	"github.com/go-whisk/activationstore/kafkastore"
	"github.com/go-whisk/activationstore/kafkastore/storemetrics"
	"github.com/go-whisk/activationstore/primary/memory"
	"github.com/go-whisk/activationstore/store"
)

// TestSpoolMetricsAndReadiness: a Store whose brokers are down spools its
// records; the collector shows them waiting, lint-clean, and the
// readiness handler answers 200, then 503 once the Store is closed.
func TestSpoolMetricsAndReadiness(t *testing.T) {
	ports, err := childproc.FreePorts(1)
	if err != nil {
		t.Fatal(err)
	}
	s, err := kafkastore.New(memory.New(), kafkastore.WithBrokers("127.0.0.1:"+strconv.Itoa(ports[0])),
		kafkastore.WithSpool(t.TempDir()))
	if err != nil {
		t.Fatalf("New with a spool and no broker: %v", err)
	}
	defer s.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	const n = 7
	for range n {
		if _, err := s.Store(ctx, activationtest.New("guest"), store.UserContext{}); err != nil {
			t.Fatalf("Store: %v", err)
		}
	}

	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(storemetrics.NewCollector(s))
	if problems, err := testutil.GatherAndLint(reg); err != nil || len(problems) > 0 {
		t.Fatalf("lint: %v %v", err, problems)
	}
	want := `
# HELP activationstore_store_spool_records Records in the spool not yet acknowledged by Kafka.
# TYPE activationstore_store_spool_records gauge
activationstore_store_spool_records 7
# HELP activationstore_store_spooled_total Records fdatasynced in the spool.
# TYPE activationstore_store_spooled_total counter
activationstore_store_spooled_total 7
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want),
		"activationstore_store_spool_records", "activationstore_store_spooled_total"); err != nil {
		t.Error(err)
	}
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() == storemetrics.Namespace+"spool_append_seconds" {
			if got := f.GetMetric()[0].GetHistogram().GetSampleCount(); got != n {
				t.Errorf("spool_append_seconds counts %d appends, want %d", got, n)
			}
		}
	}

	probe := func() (int, string) {
		rec := httptest.NewRecorder()
		storemetrics.ReadyHandler(s).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/ready", nil))
		return rec.Code, rec.Body.String()
	}
	if code, body := probe(); code != http.StatusOK {
		t.Errorf("ready: %d %q; want 200", code, body)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if code, body := probe(); code != http.StatusServiceUnavailable || !strings.Contains(body, "closed") {
		t.Errorf("ready after Close: %d %q; want 503 saying closed", code, body)
	}
}
