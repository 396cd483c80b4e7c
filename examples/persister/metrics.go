package main

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/go-whisk/activationstore/kafkastore"
)

// collector turns Persister.Stats snapshots into Prometheus metrics at
// scrape time, so nothing is counted twice.
type collector struct {
	p *kafkastore.Persister

	persisted, conflicts, skipped, retries, deadLettered *prometheus.Desc
	lostToRetention                                      *prometheus.Desc
	commits, commitErrors, batches, batchRecords         *prometheus.Desc
	batchSeconds, lastBatchSeconds, inFlight, ready, lag *prometheus.Desc
}

func newCollector(p *kafkastore.Persister) *collector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc("activation_persister_"+name, help, labels, nil)
	}
	return &collector{
		p:                p,
		persisted:        d("persisted_total", "Activations written to the primary store."),
		conflicts:        d("conflicts_total", "Activations the primary store had already (replays), counted as persisted."),
		skipped:          d("skipped_total", "Records that carry no activation (completion messages, shrunk results)."),
		retries:          d("retries_total", "Failed primary writes that were retried."),
		lostToRetention:  d("lost_to_retention_total", "Records deleted by the topic's retention before they were persisted."),
		deadLettered:     d("dead_lettered_total", "Poison records published to the dead-letter topic."),
		commits:          d("commits_total", "Offset commits."),
		commitErrors:     d("commit_errors_total", "Failed offset commits."),
		batches:          d("batches_total", "Batches written to the primary store."),
		batchRecords:     d("batch_records_total", "Records in written batches."),
		batchSeconds:     d("batch_seconds_total", "Time spent writing batches, retries included."),
		lastBatchSeconds: d("last_batch_seconds", "Duration of the latest batch write."),
		inFlight:         d("in_flight_bytes", "Bytes read from Kafka and not yet persisted."),
		ready:            d("ready", "1 when the persister has joined its consumer group."),
		lag:              d("lag", "Records of the partition not yet committed by the group.", "topic", "partition"),
	}
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.persisted, c.conflicts, c.skipped, c.retries, c.deadLettered, c.lostToRetention, c.commits,
		c.commitErrors, c.batches, c.batchRecords, c.batchSeconds, c.lastBatchSeconds, c.inFlight, c.ready, c.lag} {
		ch <- d
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	s := c.p.Stats()
	counter := func(d *prometheus.Desc, v float64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v)
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter(c.persisted, float64(s.Persisted))
	counter(c.conflicts, float64(s.Conflicts))
	counter(c.skipped, float64(s.Skipped))
	counter(c.retries, float64(s.Retries))
	counter(c.lostToRetention, float64(s.LostToRetention))
	counter(c.deadLettered, float64(s.DeadLettered))
	counter(c.commits, float64(s.Commits))
	counter(c.commitErrors, float64(s.CommitErrors))
	counter(c.batches, float64(s.Batches))
	counter(c.batchRecords, float64(s.BatchRecords))
	counter(c.batchSeconds, s.BatchLatency.Seconds())
	gauge(c.lastBatchSeconds, s.LastBatchLatency.Seconds())
	gauge(c.inFlight, float64(s.InFlightBytes))
	ready := 0.0
	if s.Ready {
		ready = 1
	}
	gauge(c.ready, ready)
	for _, pl := range s.Partitions {
		gauge(c.lag, float64(pl.Lag), pl.Topic, strconv.Itoa(pl.Partition))
	}
}
