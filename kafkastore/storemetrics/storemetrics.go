// Package storemetrics serves a kafkastore.Store's health to the service
// it runs in: its Stats as Prometheus metrics (NewCollector) and its
// readiness as an HTTP handler (ReadyHandler). A controller or invoker
// registers the collector in its own registry and mounts the handler
// beside its own probes; the Store itself imports no metrics library.
package storemetrics

import (
	"io"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/go-whisk/activationstore/kafkastore"
)

// Collector turns Store.Stats snapshots into Prometheus metrics at scrape
// time. The spool's metrics are present only when the Store has a spool.
type Collector struct {
	s       *kafkastore.Store
	descs   map[string]*prometheus.Desc
	ordered []*prometheus.Desc
}

// metric describes one exported value.
type metric struct {
	name, help string
	kind       prometheus.ValueType // CounterValue or GaugeValue; histograms below
	spool      bool                 // exported only with a spool
	value      func(kafkastore.StoreStats) float64
}

var metrics = []metric{
	{"published_total", "Records acknowledged by every in-sync replica (with a spool: sent by the publisher).", prometheus.CounterValue, false,
		func(s kafkastore.StoreStats) float64 { return float64(s.Published) }},
	{"publish_failures_total", "Records whose publish failed or timed out (without a spool); each was logged.", prometheus.CounterValue, false,
		func(s kafkastore.StoreStats) float64 { return float64(s.PublishFailures) }},
	{"publish_retries_total", "Records sent again after a produce failure that may pass.", prometheus.CounterValue, false,
		func(s kafkastore.StoreStats) float64 { return float64(s.PublishRetries) }},
	{"oversize_total", "Records above the maximum request size.", prometheus.CounterValue, false,
		func(s kafkastore.StoreStats) float64 { return float64(s.Oversize) }},
	{"oversize_to_primary_total", "Oversize records stored in the primary instead.", prometheus.CounterValue, false,
		func(s kafkastore.StoreStats) float64 { return float64(s.OversizeToPrimary) }},
	{"fallbacks_total", "Records stored in the primary because Kafka or the spool did not take them.", prometheus.CounterValue, false,
		func(s kafkastore.StoreStats) float64 { return float64(s.Fallbacks) }},
	{"primary_failures_total", "Failed writes to the primary.", prometheus.CounterValue, false,
		func(s kafkastore.StoreStats) float64 { return float64(s.PrimaryFailures) }},
	{"invalid_total", "Records rejected by validation.", prometheus.CounterValue, false,
		func(s kafkastore.StoreStats) float64 { return float64(s.Invalid) }},
	{"spooled_total", "Records fdatasynced in the spool.", prometheus.CounterValue, true,
		func(s kafkastore.StoreStats) float64 { return float64(s.Spooled) }},
	{"spool_failures_total", "Records the spool did not take (full, disk full, failed write or sync).", prometheus.CounterValue, true,
		func(s kafkastore.StoreStats) float64 { return float64(s.SpoolFailures) }},
	{"spool_records", "Records in the spool not yet acknowledged by Kafka.", prometheus.GaugeValue, true,
		func(s kafkastore.StoreStats) float64 { return float64(s.Spool.Records) }},
	{"spool_bytes", "Bytes of the records in the spool not yet acknowledged by Kafka.", prometheus.GaugeValue, true,
		func(s kafkastore.StoreStats) float64 { return float64(s.Spool.Bytes) }},
	{"spool_disk_bytes", "Size of the spool's segment files, preallocation included.", prometheus.GaugeValue, true,
		func(s kafkastore.StoreStats) float64 { return float64(s.Spool.DiskBytes) }},
	{"spool_segments", "Segment files of the spool.", prometheus.GaugeValue, true,
		func(s kafkastore.StoreStats) float64 { return float64(s.Spool.Segments) }},
	{"spool_oldest_age_seconds", "Age of the oldest record not yet in Kafka; 0 when none.", prometheus.GaugeValue, true,
		func(s kafkastore.StoreStats) float64 { return s.Spool.OldestAge.Seconds() }},
	{"spool_replayed_total", "Records an earlier process left in the spool, published by this one.", prometheus.CounterValue, true,
		func(s kafkastore.StoreStats) float64 { return float64(s.Spool.Replayed) }},
	{"spool_torn_tails_total", "Tails cut at a half-written frame when the spool was opened.", prometheus.CounterValue, true,
		func(s kafkastore.StoreStats) float64 { return float64(s.Spool.TornTails) }},
	{"spool_corrupt_frames_total", "Frames lost to corruption found when the spool was opened.", prometheus.CounterValue, true,
		func(s kafkastore.StoreStats) float64 { return float64(s.Spool.CorruptFrames) }},
	{"spool_quarantined_total", "Damaged segments copied to the spool's quarantine directory.", prometheus.CounterValue, true,
		func(s kafkastore.StoreStats) float64 { return float64(s.Spool.Quarantined) }},
	{"spool_full_waits_total", "Appends that waited for room in a full spool.", prometheus.CounterValue, true,
		func(s kafkastore.StoreStats) float64 { return float64(s.Spool.FullWaits) }},
	{"spool_full_rejections_total", "Appends refused because the spool stayed full (ErrSpoolFull).", prometheus.CounterValue, true,
		func(s kafkastore.StoreStats) float64 { return float64(s.Spool.FullRejections) }},
	{"spool_write_errors_total", "Groups whose write or fdatasync failed.", prometheus.CounterValue, true,
		func(s kafkastore.StoreStats) float64 { return float64(s.Spool.WriteErrors) }},
	{"spool_disk_failing", "1 while the spool's latest write or sync failed.", prometheus.GaugeValue, true,
		func(s kafkastore.StoreStats) float64 {
			if s.Spool.DiskError != nil {
				return 1
			}
			return 0
		}},
	{"spool_publish_errors_total", "Failed attempts to send spooled records to Kafka (each sent again).", prometheus.CounterValue, true,
		func(s kafkastore.StoreStats) float64 { return float64(s.Spool.PublishErrors) }},
	{"spool_undeliverable_total", "Spooled records skipped as undecodable or refused by Kafka with no activation for the primary.", prometheus.CounterValue, true,
		func(s kafkastore.StoreStats) float64 { return float64(s.Spool.Undeliverable) }},
}

// histograms are the latency distributions.
var histograms = []struct {
	name, help string
	spool      bool
	value      func(kafkastore.StoreStats) kafkastore.LatencySummary
}{
	{"publish_seconds", "Successful publishes: Store to Kafka's acknowledgement.", false,
		func(s kafkastore.StoreStats) kafkastore.LatencySummary { return s.PublishLatency }},
	{"spool_append_seconds", "Successful spool appends: a Store's latency with a spool.", true,
		func(s kafkastore.StoreStats) kafkastore.LatencySummary { return s.SpoolLatency }},
	{"spool_sync_seconds", "The spool's fdatasyncs, one per group of concurrent Stores.", true,
		func(s kafkastore.StoreStats) kafkastore.LatencySummary { return s.Spool.SyncLatency }},
}

// Namespace prefixes every metric name: activationstore_store_….
const Namespace = "activationstore_store_"

// NewCollector returns a collector of s's metrics; label it per Store
// with prometheus.WrapRegistererWith when a service has more than one.
func NewCollector(s *kafkastore.Store) *Collector {
	c := &Collector{s: s, descs: map[string]*prometheus.Desc{}}
	add := func(name, help string) {
		d := prometheus.NewDesc(Namespace+name, help, nil, nil)
		c.descs[name] = d
		c.ordered = append(c.ordered, d)
	}
	for _, m := range metrics {
		add(m.name, m.help)
	}
	for _, h := range histograms {
		add(h.name, h.help)
	}
	return c
}

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.ordered {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	st := c.s.Stats()
	spooled := st.Spool.Dir != ""
	for _, m := range metrics {
		if m.spool && !spooled {
			continue
		}
		ch <- prometheus.MustNewConstMetric(c.descs[m.name], m.kind, m.value(st))
	}
	for _, h := range histograms {
		if h.spool && !spooled {
			continue
		}
		l := h.value(st)
		buckets := make(map[float64]uint64, len(kafkastore.LatencyBounds))
		for i, b := range kafkastore.LatencyBounds {
			if i < len(l.Buckets) {
				buckets[b.Seconds()] = l.Buckets[i]
			}
		}
		ch <- prometheus.MustNewConstHistogram(c.descs[h.name], l.Count, l.Sum.Seconds(), buckets)
	}
}

// ReadyHandler answers 200 "ready" while s.Ready() is nil, and 503 with
// its error otherwise (the spool full or its disk failing): mount it as,
// or inside, the service's readiness probe.
func ReadyHandler(s *kafkastore.Store) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		if err := s.Ready(); err != nil {
			http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		_, _ = io.WriteString(w, "ready")
	})
}
