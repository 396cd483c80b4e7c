package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"slices"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/go-whisk/activationstore/kafkastore/persister"
)

// replayCommand names the dead-letter replay command of the binary.
const replayCommand = "replay-dead-letters"

// Limits of the replay.
const (
	// replayFetchTimeout bounds the wait for the next record below the end
	// offset seen at start; only a record deleted meanwhile (retention) or
	// an unreachable broker makes a fetch take that long.
	replayFetchTimeout = 30 * time.Second
	// replayBatchRecords and replayBatchBytes bound one publish.
	replayBatchRecords = 100
	replayBatchBytes   = 4 << 20
	// replayMaxRecordBytes is the largest record to copy: what a
	// dead-letter topic the persister creates accepts, plus headers.
	replayMaxRecordBytes = 16<<20 + 64<<10
)

// deadLetterHeaders are the headers the persister adds when it
// dead-letters a record; a copy drops them.
var deadLetterHeaders = []string{
	persister.DeadLetterHeaderTopic, persister.DeadLetterHeaderPartition, persister.DeadLetterHeaderOffset,
	persister.DeadLetterHeaderReason, persister.DeadLetterHeaderError,
}

type replaySettings struct {
	brokers      []string
	deadLetter   string
	to, reason   string
	from, before offsetsFlag
	since, until time.Time
	dryRun       bool
}

// offsetsFlag is an offset bound: "N" for every partition, or "P=N,P=N"
// for the partitions listed, which are then the only ones read.
type offsetsFlag struct {
	given       bool
	all         int64
	byPartition map[int]int64 // nil: all applies to every partition
}

func (o *offsetsFlag) String() string {
	if o == nil || !o.given {
		return ""
	}
	if o.byPartition == nil {
		return strconv.FormatInt(o.all, 10)
	}
	parts := make([]string, 0, len(o.byPartition))
	for _, p := range slices.Sorted(maps.Keys(o.byPartition)) {
		parts = append(parts, fmt.Sprintf("%d=%d", p, o.byPartition[p]))
	}
	return strings.Join(parts, ",")
}

func (o *offsetsFlag) Set(v string) error {
	if !strings.Contains(v, "=") {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			return fmt.Errorf("%q: want a non-negative offset, or partition=offset pairs separated by commas", v)
		}
		o.given, o.all, o.byPartition = true, n, nil
		return nil
	}
	m := map[int]int64{}
	for pair := range strings.SplitSeq(v, ",") {
		ps, ns, _ := strings.Cut(pair, "=")
		p, err1 := strconv.Atoi(strings.TrimSpace(ps))
		n, err2 := strconv.ParseInt(strings.TrimSpace(ns), 10, 64)
		if err1 != nil || err2 != nil || p < 0 || n < 0 {
			return fmt.Errorf("%q: want partition=offset pairs separated by commas, such as 0=120,1=80", pair)
		}
		m[p] = n
	}
	o.given, o.all, o.byPartition = true, 0, m
	return nil
}

// get returns the bound of partition p, if any.
func (o *offsetsFlag) get(p int) (int64, bool) {
	if o.byPartition != nil {
		n, ok := o.byPartition[p]
		return n, ok
	}
	return o.all, o.given
}

func parseReplay(args []string, getenv func(string) string, stderr io.Writer) (*replaySettings, error) {
	fs := flag.NewFlagSet("persister "+replayCommand, flag.ContinueOnError)
	fs.SetOutput(stderr)
	rs := &replaySettings{}
	var brokers string
	fs.StringVar(&brokers, "brokers", "", "Kafka bootstrap brokers, comma-separated [PERSISTER_BROKERS]")
	fs.StringVar(&rs.deadLetter, "dead-letter-topic", "activations-dead-letter", "the dead-letter topic to read [PERSISTER_DEAD_LETTER_TOPIC]")
	fs.StringVar(&rs.to, "to", "", "publish every record to this topic (default: the topic it came from)")
	fs.Var(&rs.from, "from-offset", "first offset to copy: N for every partition, or P=N,P=N for those partitions only (default: the oldest)")
	fs.Var(&rs.before, "to-offset", "stop before this offset: N for every partition, or P=N,P=N for those partitions only (default: the end at start)")
	timeFlag := func(dst *time.Time) func(string) error {
		return func(v string) error {
			t, err := time.Parse(time.RFC3339, v)
			if err != nil {
				return fmt.Errorf("want an RFC 3339 time such as 2024-05-01T12:00:00Z: %w", err)
			}
			*dst = t
			return nil
		}
	}
	fs.Func("since", "only records dead-lettered at or after this time (RFC 3339)", timeFlag(&rs.since))
	fs.Func("until", "only records dead-lettered before this time (RFC 3339)", timeFlag(&rs.until))
	fs.StringVar(&rs.reason, "reason", "", "only records of this reason: "+persister.DeadLetterInvalid+" or "+persister.DeadLetterMalformed+" (default: both)")
	fs.BoolVar(&rs.dryRun, "dry-run", false, "count the records by reason and source topic, copy nothing")
	err := parseFlags(fs, args, getenv, map[string]string{
		"brokers": "PERSISTER_BROKERS", "dead-letter-topic": "PERSISTER_DEAD_LETTER_TOPIC",
	})
	if err != nil {
		return nil, err
	}
	switch {
	case fs.NArg() > 0:
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	case brokers == "":
		return nil, errors.New("no Kafka brokers: pass -brokers host:port or set PERSISTER_BROKERS")
	case rs.deadLetter == "":
		return nil, errors.New("-dead-letter-topic: empty")
	case rs.to == rs.deadLetter:
		return nil, errors.New("-to names the dead-letter topic itself")
	case rs.reason != "" && rs.reason != persister.DeadLetterInvalid && rs.reason != persister.DeadLetterMalformed:
		return nil, fmt.Errorf("-reason %q: want %s or %s", rs.reason, persister.DeadLetterInvalid, persister.DeadLetterMalformed)
	case !rs.since.IsZero() && !rs.until.IsZero() && !rs.since.Before(rs.until):
		return nil, fmt.Errorf("-since %s is not before -until %s", rs.since.Format(time.RFC3339), rs.until.Format(time.RFC3339))
	}
	rs.brokers = strings.Split(brokers, ",")
	return rs, nil
}

// reads reports whether partition p is to be read: every partition,
// unless an offset bound lists partitions.
func (rs *replaySettings) reads(p int) bool {
	_, inFrom := rs.from.byPartition[p]
	_, inBefore := rs.before.byPartition[p]
	return (rs.from.byPartition == nil && rs.before.byPartition == nil) || inFrom || inBefore
}

// partitionRange is the part of one dead-letter partition to read:
// offsets [start, end).
type partitionRange struct {
	partition  int
	start, end int64
}

// replayer copies the selected records of the dead-letter topic.
type replayer struct {
	rs     *replaySettings
	dialer *kafka.Dialer
	writer *kafka.Writer // nil on a dry run

	read     int               // records read
	selected map[replayKey]int // by reason and source topic
	noSource int               // selected records that name no source topic, with no -to
	pending  []kafka.Message   // selected, not yet published
	size     int               // bytes of pending
	copied   int               // published
}

type replayKey struct{ reason, source string }

func replay(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	rs, err := parseReplay(args, getenv, stderr)
	if err != nil {
		return err
	}
	dialer := &kafka.Dialer{ClientID: "persister-" + replayCommand, Timeout: 10 * time.Second, DualStack: true}
	ranges, err := replayRanges(ctx, dialer, rs)
	if err != nil {
		return err
	}
	r := &replayer{rs: rs, dialer: dialer, selected: map[replayKey]int{}}
	if !rs.dryRun {
		transport := &kafka.Transport{ClientID: dialer.ClientID, DialTimeout: 10 * time.Second}
		defer transport.CloseIdleConnections()
		r.writer = &kafka.Writer{
			Addr:            kafka.TCP(rs.brokers...),
			Transport:       transport,
			Balancer:        &kafka.Hash{},
			RequiredAcks:    kafka.RequireAll,
			MaxAttempts:     5,
			WriteBackoffMax: time.Second,
			BatchTimeout:    time.Millisecond,
			BatchSize:       replayBatchRecords,
			BatchBytes:      replayBatchBytes + replayMaxRecordBytes,
			WriteTimeout:    10 * time.Second,
		}
		defer r.writer.Close()
	}
	for _, pr := range ranges {
		if err = r.copyRange(ctx, pr); err != nil {
			break
		}
	}
	if err == nil {
		err = r.flush(ctx)
	}
	r.report(stdout, ranges)
	switch {
	case err != nil:
		return fmt.Errorf("%s: copied %d of %d selected records, then failed: %w", replayCommand, r.copied, r.total(), err)
	case r.noSource > 0 && !rs.dryRun:
		return fmt.Errorf("%s: copied %d records; %d records name no source topic (no %s header) and were not copied: name a topic with -to",
			replayCommand, r.copied, r.noSource, persister.DeadLetterHeaderTopic)
	}
	return nil
}

// replayRanges finds the partitions of the dead-letter topic and the
// offsets to read in each, up to the end offsets now.
func replayRanges(ctx context.Context, dialer *kafka.Dialer, rs *replaySettings) ([]partitionRange, error) {
	// Client.Metadata asks for no topic creation, unlike Conn's.
	transport := &kafka.Transport{ClientID: dialer.ClientID, DialTimeout: dialer.Timeout}
	defer transport.CloseIdleConnections()
	client := &kafka.Client{Addr: kafka.TCP(rs.brokers...), Transport: transport, Timeout: 10 * time.Second}
	meta, err := client.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{rs.deadLetter}})
	if err != nil {
		return nil, fmt.Errorf("dead-letter topic %q: metadata: %w", rs.deadLetter, err)
	}
	if len(meta.Topics) != 1 || meta.Topics[0].Error != nil || len(meta.Topics[0].Partitions) == 0 {
		var cause error = kafka.UnknownTopicOrPartition
		if len(meta.Topics) == 1 && meta.Topics[0].Error != nil {
			cause = meta.Topics[0].Error
		}
		return nil, fmt.Errorf("dead-letter topic %q: %w", rs.deadLetter, cause)
	}
	exists := map[int]bool{}
	for _, p := range meta.Topics[0].Partitions {
		exists[p.ID] = true
	}
	for name, o := range map[string]offsetsFlag{"-from-offset": rs.from, "-to-offset": rs.before} {
		for p := range o.byPartition {
			if !exists[p] {
				return nil, fmt.Errorf("%s names partition %d: dead-letter topic %q has %d partitions", name, p, rs.deadLetter, len(exists))
			}
		}
	}
	var ranges []partitionRange
	for _, p := range meta.Topics[0].Partitions {
		if !rs.reads(p.ID) {
			continue
		}
		from, fromSet := rs.from.get(p.ID)
		before, beforeSet := rs.before.get(p.ID)
		pr, err := partitionOffsets(ctx, dialer, rs, p.ID)
		if err != nil {
			return nil, err
		}
		if fromSet {
			pr.start = max(pr.start, from)
		}
		if beforeSet {
			pr.end = min(pr.end, before)
		}
		pr.start = min(pr.start, pr.end)
		ranges = append(ranges, pr)
	}
	sort.Slice(ranges, func(i, j int) bool { return ranges[i].partition < ranges[j].partition })
	return ranges, nil
}

// partitionOffsets returns the offsets of partition p from the oldest, or
// the first record at -since, to the end.
func partitionOffsets(ctx context.Context, dialer *kafka.Dialer, rs *replaySettings, p int) (partitionRange, error) {
	pr := partitionRange{partition: p}
	var conn *kafka.Conn
	var err error
	for _, b := range rs.brokers {
		if conn, err = dialer.DialLeader(ctx, "tcp", b, rs.deadLetter, p); err == nil {
			break
		}
	}
	if err != nil {
		return pr, fmt.Errorf("dead-letter topic %q partition %d: %w", rs.deadLetter, p, err)
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	} else {
		_ = conn.SetDeadline(time.Now().Add(dialer.Timeout))
	}
	if pr.start, pr.end, err = conn.ReadOffsets(); err != nil {
		return pr, fmt.Errorf("dead-letter topic %q partition %d: offsets: %w", rs.deadLetter, p, err)
	}
	if !rs.since.IsZero() {
		at, err := conn.ReadOffset(rs.since)
		if err != nil {
			return pr, fmt.Errorf("dead-letter topic %q partition %d: offset at %s: %w", rs.deadLetter, p, rs.since.Format(time.RFC3339), err)
		}
		if at < 0 { // no record that late
			at = pr.end
		}
		pr.start = max(pr.start, at)
	}
	return pr, nil
}

// copyRange reads the records of pr, selecting and publishing.
func (r *replayer) copyRange(ctx context.Context, pr partitionRange) error {
	if pr.start >= pr.end {
		return nil
	}
	reader := kafka.NewReader(kafka.ReaderConfig{
		Brokers:   r.rs.brokers,
		Topic:     r.rs.deadLetter,
		Partition: pr.partition,
		Dialer:    r.dialer,
		MinBytes:  1,
		MaxBytes:  replayMaxRecordBytes,
		MaxWait:   250 * time.Millisecond,
	})
	defer reader.Close()
	if err := reader.SetOffset(pr.start); err != nil {
		return err
	}
	for next := pr.start; next < pr.end; {
		fctx, cancel := context.WithTimeout(ctx, replayFetchTimeout)
		m, err := reader.FetchMessage(fctx)
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return fmt.Errorf("interrupted: %w", ctx.Err())
			}
			return fmt.Errorf("partition %d: no record at offset %d (the end at start was %d): %w", pr.partition, next, pr.end, err)
		}
		if m.Offset >= pr.end {
			break
		}
		next = m.Offset + 1
		r.read++
		if err := r.take(ctx, m); err != nil {
			return err
		}
	}
	return nil
}

// take selects m if it matches the filters, and publishes once a batch is
// full.
func (r *replayer) take(ctx context.Context, m kafka.Message) error {
	if (!r.rs.since.IsZero() && m.Time.Before(r.rs.since)) || (!r.rs.until.IsZero() && !m.Time.Before(r.rs.until)) {
		return nil
	}
	var reason, source string
	headers := make([]kafka.Header, 0, len(m.Headers))
	for _, h := range m.Headers {
		switch h.Key {
		case persister.DeadLetterHeaderReason:
			reason = string(h.Value)
		case persister.DeadLetterHeaderTopic:
			source = string(h.Value)
		}
		if !slices.Contains(deadLetterHeaders, h.Key) {
			headers = append(headers, h)
		}
	}
	if r.rs.reason != "" && reason != r.rs.reason {
		return nil
	}
	r.selected[replayKey{reason, source}]++
	dest := r.rs.to
	if dest == "" {
		dest = source
	}
	if dest == "" {
		r.noSource++
		return nil
	}
	if r.writer == nil {
		return nil
	}
	r.pending = append(r.pending, kafka.Message{Topic: dest, Key: m.Key, Value: m.Value, Headers: headers})
	r.size += len(m.Key) + len(m.Value)
	if len(r.pending) >= replayBatchRecords || r.size >= replayBatchBytes {
		return r.flush(ctx)
	}
	return nil
}

// flush publishes the pending records and counts those the brokers took.
func (r *replayer) flush(ctx context.Context) error {
	if len(r.pending) == 0 {
		return nil
	}
	err := r.writer.WriteMessages(ctx, r.pending...)
	var werrs kafka.WriteErrors
	switch {
	case err == nil:
		r.copied += len(r.pending)
	case errors.As(err, &werrs):
		r.copied += len(werrs) - werrs.Count()
	}
	r.pending, r.size = r.pending[:0], 0
	if ctx.Err() != nil {
		return fmt.Errorf("interrupted: %w", ctx.Err())
	}
	return err
}

func (r *replayer) total() int {
	n := 0
	for _, c := range r.selected {
		n += c
	}
	return n
}

// report prints what was read and selected, by reason and source topic,
// and what was copied.
func (r *replayer) report(w io.Writer, ranges []partitionRange) {
	parts := make([]string, len(ranges))
	for i, pr := range ranges {
		parts[i] = fmt.Sprintf("partition %d offsets [%d, %d)", pr.partition, pr.start, pr.end)
	}
	fmt.Fprintf(w, "dead-letter topic %s: read %d records (%s)\n", r.rs.deadLetter, r.read, strings.Join(parts, ", "))
	fmt.Fprintf(w, "selected %d records\n", r.total())
	if len(r.selected) > 0 {
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "REASON\tSOURCE TOPIC\tRECORDS")
		keys := slices.SortedFunc(maps.Keys(r.selected), func(a, b replayKey) int {
			if c := strings.Compare(a.reason, b.reason); c != 0 {
				return c
			}
			return strings.Compare(a.source, b.source)
		})
		for _, k := range keys {
			fmt.Fprintf(tw, "%s\t%s\t%d\n", orNone(k.reason), orNone(k.source), r.selected[k])
		}
		_ = tw.Flush()
	}
	dest := "their source topics"
	if r.rs.to != "" {
		dest = r.rs.to
	}
	if r.rs.dryRun {
		fmt.Fprintf(w, "dry run: copied nothing; would copy %d records to %s\n", r.total()-r.noSource, dest)
		return
	}
	fmt.Fprintf(w, "copied %d records to %s\n", r.copied, dest)
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}
