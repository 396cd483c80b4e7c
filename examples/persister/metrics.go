package main

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/go-whisk/activationstore/kafkastore"
	"github.com/go-whisk/activationstore/kafkastore/persister"
)

// collector turns Persister.Stats snapshots into Prometheus metrics at
// scrape time, so nothing is counted twice.
type collector struct {
	p *persister.Persister

	persisted, conflicts, skipped, retries, deadLettered *prometheus.Desc
	storeSkipped, read, abandoned, redelivered           *prometheus.Desc
	commits, commitErrors, batches, batchRecords         *prometheus.Desc
	batchSeconds, lastBatchSeconds, inFlight, ready, lag *prometheus.Desc
	recordAge, lostToRetention                           *prometheus.Desc
}

const storeSkippedHelp = "Activations not stored because their writer marked them with the " +
	kafkastore.HeaderStoreSkip + " header (store level or storeActivations=false)."

func newCollector(p *persister.Persister) *collector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc("activation_persister_"+name, help, labels, nil)
	}
	return &collector{
		p: p,
		read: d("read_total", "Records read from Kafka (each delivery). Once the persister stops, read_total = "+
			"persisted_total + conflicts_total + skipped_total + store_skipped_total + dead_lettered_total + abandoned_total."),
		persisted: d("persisted_total", "Activations written to the primary store, including those found there after "+
			"an earlier write of theirs was abandoned mid-flight (redelivered_total)."),
		redelivered:      d("redelivered_total", "Activations of persisted_total found already stored after a write of them was abandoned mid-flight."),
		conflicts:        d("conflicts_total", "Activations the primary store had already with no abandoned write on record (duplicates); not in persisted_total."),
		abandoned:        d("abandoned_total", "Records read and left uncommitted on a rebalance or shutdown, for the partition's next owner to read again."),
		skipped:          d("skipped_total", "Records that carry no activation (completion messages, shrunk results)."),
		storeSkipped:     d("store_skipped_total", storeSkippedHelp),
		retries:          d("retries_total", "Failed primary writes that were retried."),
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
		recordAge: d("record_age_seconds", "Age of records when persisted (now minus the record timestamp): "+
			"the time from publish until readable in the primary store."),
		lostToRetention: d("lost_to_retention_total", "Records Kafka deleted (retention) before they were persisted.",
			"topic", "partition"),
	}
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.read, c.abandoned, c.redelivered, c.persisted, c.conflicts, c.skipped, c.storeSkipped, c.retries, c.deadLettered,
		c.commits, c.commitErrors, c.batches, c.batchRecords, c.batchSeconds, c.lastBatchSeconds, c.inFlight, c.ready,
		c.lag, c.recordAge, c.lostToRetention} {
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
	counter(c.read, float64(s.Read))
	counter(c.abandoned, float64(s.Abandoned))
	counter(c.redelivered, float64(s.Redelivered))
	counter(c.persisted, float64(s.Persisted))
	counter(c.conflicts, float64(s.Conflicts))
	counter(c.skipped, float64(s.Skipped))
	counter(c.storeSkipped, float64(s.StoreSkipped))
	counter(c.retries, float64(s.Retries))
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
	for _, l := range s.LostToRetention {
		ch <- prometheus.MustNewConstMetric(c.lostToRetention, prometheus.CounterValue, float64(l.Records),
			l.Topic, strconv.Itoa(l.Partition))
	}
	ch <- prometheus.MustNewConstHistogram(c.recordAge, uint64(s.RecordAge.Count), s.RecordAge.Sum.Seconds(),
		cumulativeBuckets(s.RecordAge))
}

// cumulativeBuckets turns the histogram's per-bucket counts into
// Prometheus's cumulative ones, keyed by upper bound in seconds.
func cumulativeBuckets(h persister.AgeHistogram) map[float64]uint64 {
	out := make(map[float64]uint64, len(h.Bounds))
	var sum int64
	for i, b := range h.Bounds {
		sum += h.Counts[i]
		out[b.Seconds()] = uint64(sum)
	}
	return out
}
