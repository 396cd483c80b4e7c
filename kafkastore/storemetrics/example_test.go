package storemetrics_test

import (
	"context"
	"fmt"
	"net/http"
	"os"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/go-whisk/activationstore/internal/activationtest"
	"github.com/go-whisk/activationstore/kafkastore"
	"github.com/go-whisk/activationstore/kafkastore/storemetrics"
	"github.com/go-whisk/activationstore/primary/memory"
	"github.com/go-whisk/activationstore/store"
)

// A service exports its Store's metrics and readiness beside its own.
// Here no broker answers: the Store spools its record, and the metrics
// show it waiting.
func Example() {
	dir, _ := os.MkdirTemp("", "spool")
	defer os.RemoveAll(dir)
	activations, err := kafkastore.New(memory.New(),
		kafkastore.WithBrokers("127.0.0.1:1"), // nothing listens there
		kafkastore.WithSpool(dir))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer activations.Close()

	registry := prometheus.NewRegistry()
	registry.MustRegister(storemetrics.NewCollector(activations))
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(registry, promhttp.HandlerOpts{}))
	mux.Handle("GET /ready", storemetrics.ReadyHandler(activations))

	_, err = activations.Store(context.Background(), activationtest.New("guest"), store.UserContext{})
	fmt.Println("stored:", err == nil)
	fmt.Println("ready:", activations.Ready() == nil)
	fmt.Println("waiting for Kafka:", activations.Stats().Spool.Records)
	// Output:
	// stored: true
	// ready: true
	// waiting for Kafka: 1
}
