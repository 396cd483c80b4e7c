package losstest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/bits"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/go-whisk/activationstore/codec"
	"github.com/go-whisk/activationstore/internal/couchtest"
	"github.com/go-whisk/activationstore/internal/kafkatest"
	"github.com/go-whisk/activationstore/store"
)

// Namespace is the namespace of every numbered activation.
const Namespace = "guest"

// ID is the activation id of activation i of a run: the run in the first
// 8 hexadecimal digits, i in the other 24, so that an id read back from a
// store names the activation it is.
func ID(run uint32, i int) string { return fmt.Sprintf("%08x%024x", run, i) }

// Index is the inverse of ID.
func Index(id string) (run uint32, i int, ok bool) {
	if len(id) != store.ActivationIDLength {
		return 0, 0, false
	}
	r, err1 := strconv.ParseUint(id[:8], 16, 32)
	n, err2 := strconv.ParseUint(id[8:], 16, 63)
	if err1 != nil || err2 != nil || n > 1<<40 {
		return 0, 0, false
	}
	return uint32(r), int(n), true
}

// NewRun returns a run number distinct across the tests of a process and
// across processes sharing a database server.
func NewRun() uint32 {
	return uint32(time.Now().UnixNano()>>10) ^ runSeq.Add(0x9e3779b9)
}

var runSeq atomic.Uint32

// Activation returns activation i of run: a small, valid completed
// activation, as an invoker acks it.
func Activation(run uint32, i int) *store.Activation {
	start := time.UnixMilli(1_700_000_000_000 + int64(i))
	d := int64(3)
	return &store.Activation{
		Namespace:    Namespace,
		Name:         "loss",
		Subject:      "guest-subject",
		ActivationID: ID(run, i),
		Start:        start,
		End:          start.Add(3 * time.Millisecond),
		Response:     store.Response{StatusCode: store.StatusSuccess, Result: json.RawMessage(`{"i":` + strconv.Itoa(i) + `}`)},
		Logs:         []string{},
		Version:      store.DefaultVersion,
		Annotations:  []store.Annotation{{Key: "kind", Value: json.RawMessage(`"nodejs:20"`)}},
		Duration:     &d,
	}
}

// Record is activation i of run as the ResultMessage an invoker publishes
// on completed<N>, keyed by its activation id.
func Record(t testing.TB, run uint32, i int) kafka.Message {
	t.Helper()
	a := Activation(run, i)
	v, err := codec.MarshalResultMessage(codec.TransactionID{ID: "loss" + strconv.Itoa(i), Start: a.Start}, a)
	if err != nil {
		t.Fatalf("losstest: MarshalResultMessage: %v", err)
	}
	return kafka.Message{Key: []byte(a.ActivationID), Value: v}
}

// Records returns the records of activations [0, n) of run.
func Records(t testing.TB, run uint32, n int) []kafka.Message {
	t.Helper()
	msgs := make([]kafka.Message, n)
	for i := range msgs {
		msgs[i] = Record(t, run, i)
	}
	return msgs
}

// Produce writes msgs to topic as fast as a raw kafka.Writer goes: large
// lz4-compressed batches spread round-robin over the partitions, acks=all.
// Compression keeps the in-process broker's memory small.
func Produce(t testing.TB, addr, topic string, msgs []kafka.Message) {
	t.Helper()
	ProduceCompressed(t, addr, topic, msgs, kafka.Lz4)
}

// ProduceCompressed is Produce with the given compression codec (0: none).
func ProduceCompressed(t testing.TB, addr, topic string, msgs []kafka.Message, codec kafka.Compression) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := ProduceContext(ctx, addr, topic, msgs, codec); err != nil {
		t.Fatal(err)
	}
}

// ProduceContext is ProduceCompressed for a goroutine other than the
// test's: it returns its error.
func ProduceContext(ctx context.Context, addr, topic string, msgs []kafka.Message, codec kafka.Compression) error {
	tr := &kafka.Transport{MetadataTTL: time.Second}
	defer tr.CloseIdleConnections()
	// Uncompressed batches must fit the brokers' default
	// max.message.bytes (1 MiB); compressed ones may be larger before
	// compression, which leaves room for an oversize record.
	batchBytes, batchSize := int64(1<<20), 5000
	if codec != 0 {
		// Batches of about 64 KiB, as Java producers (batch.size) send them:
		// a consumer decompresses a whole batch at a time.
		batchBytes, batchSize = 8<<20, 100
	}
	w := &kafka.Writer{
		Addr:         kafka.TCP(addr),
		Topic:        topic,
		Transport:    tr,
		Balancer:     &kafka.RoundRobin{},
		RequiredAcks: kafka.RequireAll,
		Compression:  codec,
		BatchTimeout: time.Millisecond,
		BatchSize:    batchSize,
		BatchBytes:   batchBytes,
	}
	defer w.Close()
	for len(msgs) > 0 {
		n := min(len(msgs), 20_000)
		if err := w.WriteMessages(ctx, msgs[:n]...); err != nil {
			return fmt.Errorf("losstest: produce %d records to %s: %w", n, topic, err)
		}
		msgs = msgs[n:]
	}
	return nil
}

// ProduceJava writes msgs to topic with Kafka's Java producer, as a JVM
// service (OpenWhisk's controllers and invokers) does: Kafka's
// kafka-console-producer (kafka.tools.ConsoleProducer) of
// kafkatest.JavaClientVersion, with the given compression, acks=all,
// batch.size 64 KiB and linger.ms 100 (full batches, as a busy service sends). Its lz4 frames declare 64 KiB blocks,
// where kafka-go's declare 4 MiB. Keys and values must not contain a
// newline or a tab.
func ProduceJava(t testing.TB, addr, topic string, msgs []kafka.Message, codec kafka.Compression) {
	t.Helper()
	name := "none"
	if codec != 0 {
		name = codec.String()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd, err := kafkatest.JavaCommand(ctx, kafkatest.JavaClientVersion, "kafka.tools.ConsoleProducer",
		"--bootstrap-server", addr, "--topic", topic,
		"--compression-codec", name, "--request-required-acks", "-1",
		"--batch-size", "65536", "--timeout", "100", "--max-memory-bytes", "33554432",
		"--property", "parse.key=true", "--property", "key.separator=\t")
	if err != nil {
		t.Fatalf("losstest: Kafka's Java producer: %v", err)
	}
	var in bytes.Buffer
	for _, m := range msgs {
		if bytes.ContainsAny(m.Key, "\t\n") || bytes.ContainsAny(m.Value, "\n") {
			t.Fatalf("losstest: ProduceJava: record %q has a tab or newline", m.Key)
		}
		in.Write(m.Key)
		in.WriteByte('\t')
		in.Write(m.Value)
		in.WriteByte('\n')
	}
	cmd.Stdin = &in
	start := time.Now()
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("losstest: kafka-console-producer (Apache Kafka %s) writing %d records to %s: %v\n%s", kafkatest.JavaClientVersion, len(msgs), topic, err, out)
	}
	t.Logf("losstest: Kafka's Java producer %s wrote %d records (%s) in %v", kafkatest.JavaClientVersion, len(msgs), name, time.Since(start).Round(time.Millisecond))
}

// ReadTopic reads every record of topic, partition by partition, up to the
// end offsets of the moment of the call.
func ReadTopic(t testing.TB, b *kafkatest.Broker, topic string) []kafka.Message {
	t.Helper()
	var out []kafka.Message
	ScanTopic(t, b, topic, func(m kafka.Message) { out = append(out, m) })
	return out
}

// ScanTopic is ReadTopic handing each record to fn rather than keeping
// them all: for topics too large to hold.
func ScanTopic(t testing.TB, b *kafkatest.Broker, topic string, fn func(kafka.Message)) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	ends, err := b.EndOffsets(ctx, topic)
	if err != nil {
		t.Fatalf("losstest: end offsets of %s: %v", topic, err)
	}
	for part, end := range ends {
		if end == 0 {
			continue
		}
		// Fetches of 1 MiB: a reader whose fetch response takes longer
		// than its batch timeout to read (10 s: 16 MiB from kfake under
		// the race detector) fetches it again, for ever.
		r := kafka.NewReader(kafka.ReaderConfig{
			Brokers: []string{b.Addr()}, Topic: topic, Partition: part,
			MinBytes: 1, MaxBytes: 1 << 20, MaxWait: 100 * time.Millisecond,
		})
		for next := int64(0); ; {
			m, err := r.ReadMessage(ctx)
			if err != nil {
				_ = r.Close()
				t.Fatalf("losstest: read %s/%d at offset %d of %d: %v", topic, part, next, end, err)
			}
			next = m.Offset + 1
			fn(m)
			if m.Offset >= end-1 {
				break
			}
		}
		_ = r.Close()
	}
}

// Committed returns the group's committed offset of each partition of
// topic (absent: none yet).
func Committed(ctx context.Context, addr, group, topic string, partitions int) (map[int]int64, error) {
	ids := make([]int, partitions)
	for i := range ids {
		ids[i] = i
	}
	tr := &kafka.Transport{}
	defer tr.CloseIdleConnections()
	c := &kafka.Client{Addr: kafka.TCP(addr), Transport: tr, Timeout: 10 * time.Second}
	res, err := c.OffsetFetch(ctx, &kafka.OffsetFetchRequest{GroupID: group, Topics: map[string][]int{topic: ids}})
	if err != nil {
		return nil, err
	}
	out := map[int]int64{}
	if errors.Is(res.Error, kafka.GroupIdNotFound) {
		return out, nil
	}
	if res.Error != nil {
		return nil, res.Error
	}
	for _, p := range res.Topics[topic] {
		if p.Error != nil {
			return nil, fmt.Errorf("%s/%d: %w", topic, p.Partition, p.Error)
		}
		if p.CommittedOffset >= 0 {
			out[p.Partition] = p.CommittedOffset
		}
	}
	return out, nil
}

// GroupLag is how far the group's commits are behind the end offsets of
// topic, summed over its partitions.
func GroupLag(ctx context.Context, b *kafkatest.Broker, group, topic string) (int64, error) {
	ends, err := b.EndOffsets(ctx, topic)
	if err != nil {
		return 0, err
	}
	committed, err := Committed(ctx, b.Addr(), group, topic, len(ends))
	if err != nil {
		return 0, err
	}
	var lag int64
	for p, end := range ends {
		c, ok := committed[p]
		if !ok {
			c = 0
		}
		lag += end - c
	}
	return lag, nil
}

// DocCount is the doc_count of a CouchDB database (design documents
// included).
func DocCount(ctx context.Context, base, db string) (int, error) {
	status, body, err := couchtest.Do(ctx, "GET", base, "/"+url.PathEscape(db), nil)
	if err != nil {
		return 0, err
	}
	if status != 200 {
		return 0, fmt.Errorf("GET /%s: HTTP %d: %s", db, status, body)
	}
	var info struct {
		DocCount int `json:"doc_count"`
	}
	if err := json.Unmarshal(body, &info); err != nil {
		return 0, fmt.Errorf("GET /%s: %w", db, err)
	}
	return info.DocCount, nil
}

// DocIDs lists the ids of every document of a CouchDB database but the
// design documents, through _all_docs in pages.
func DocIDs(ctx context.Context, base, db string) ([]string, error) {
	const page = 10_000
	var ids []string
	start := ""
	for {
		q := url.Values{"limit": {strconv.Itoa(page + 1)}}
		if start != "" {
			q.Set("startkey", strconv.Quote(start))
		}
		status, body, err := couchtest.Do(ctx, "GET", base, "/"+url.PathEscape(db)+"/_all_docs?"+q.Encode(), nil)
		if err != nil {
			return nil, err
		}
		if status != 200 {
			return nil, fmt.Errorf("_all_docs of %s: HTTP %d: %.200s", db, status, body)
		}
		var res struct {
			Rows []struct {
				ID string `json:"id"`
			} `json:"rows"`
		}
		if err := json.Unmarshal(body, &res); err != nil {
			return nil, fmt.Errorf("_all_docs of %s: %w", db, err)
		}
		rows := res.Rows
		more := len(rows) > page
		if more {
			start = rows[page].ID
			rows = rows[:page]
		}
		for _, r := range rows {
			if !strings.HasPrefix(r.ID, "_design/") {
				ids = append(ids, r.ID)
			}
		}
		if !more {
			return ids, nil
		}
	}
}

// Tally checks a list of document ids ("<namespace>/<activationId>")
// against activations [0, n) of run.
type Tally struct {
	Present, Missing, Duplicates, Foreign int
	FirstMissing                          []int // up to 10
}

// CheckDocIDs tallies docIDs against activations [0, n) of run.
func CheckDocIDs(docIDs []string, run uint32, n int) Tally {
	seen := make([]bool, n)
	var t Tally
	for _, id := range docIDs {
		ns, aid, ok := strings.Cut(id, "/")
		r, i, okID := Index(aid)
		if !ok || ns != Namespace || !okID || r != run || i >= n {
			t.Foreign++
			continue
		}
		if seen[i] {
			t.Duplicates++
			continue
		}
		seen[i] = true
		t.Present++
	}
	for i, ok := range seen {
		if !ok {
			t.Missing++
			if len(t.FirstMissing) < 10 {
				t.FirstMissing = append(t.FirstMissing, i)
			}
		}
	}
	return t
}

// OK reports whether every activation is present exactly once and nothing else is.
func (t Tally) OK() bool { return t.Missing == 0 && t.Duplicates == 0 && t.Foreign == 0 }

func (t Tally) String() string {
	return fmt.Sprintf("present %d, missing %d (first %v), duplicates %d, foreign %d",
		t.Present, t.Missing, t.FirstMissing, t.Duplicates, t.Foreign)
}

// Ledger is a primary store that keeps no record: it marks, in a bitmap
// allocated up front, which activations [0, n) of its run it holds. Its
// heap does not grow with what it stores, so that a test can attribute
// heap growth to the persister. A second Store of an activation is a
// conflict, as in CouchDB; invalid activations are rejected with
// store.ErrInvalid. List is not supported; Count counts.
type Ledger struct {
	run  uint32
	n    int
	bits []atomic.Uint64
	held atomic.Int64
	// MaxRecordBytes, when positive, makes the ledger reject with an
	// *store.InvalidError an activation whose result and logs weigh more,
	// as a database with a document size limit would. Set it before use.
	MaxRecordBytes int
	// Delay, when positive, is how long each Store and StoreBatch call
	// takes, as a database's round trip would: a slow primary makes the
	// persister fill its in-flight budget. Set it before use.
	Delay time.Duration
}

var (
	_ store.Store       = (*Ledger)(nil)
	_ store.BatchStorer = (*Ledger)(nil)
)

// NewLedger returns an empty ledger of activations [0, n) of run.
func NewLedger(run uint32, n int) *Ledger {
	return &Ledger{run: run, n: n, bits: make([]atomic.Uint64, (n+63)/64)}
}

// Len is the number of activations held.
func (l *Ledger) Len() int { return int(l.held.Load()) }

// Has reports whether activation i is held.
func (l *Ledger) Has(i int) bool { return l.bits[i/64].Load()&(1<<(i%64)) != 0 }

// Missing returns the activations not held, up to max.
func (l *Ledger) Missing(max int) (missing int, first []int) {
	for w := range l.bits {
		word := l.bits[w].Load()
		for b := range 64 {
			i := w*64 + b
			if i >= l.n {
				break
			}
			if word&(1<<b) == 0 {
				missing++
				if len(first) < max {
					first = append(first, i)
				}
			}
		}
	}
	return missing, first
}

// Store marks a as held.
func (l *Ledger) Store(ctx context.Context, a *store.Activation, _ store.UserContext) (store.DocInfo, error) {
	if err := l.wait(ctx); err != nil {
		return store.DocInfo{}, err
	}
	return l.mark(a)
}

// StoreBatch marks every activation of as; results align with as.
func (l *Ledger) StoreBatch(ctx context.Context, as []*store.Activation, _ store.UserContext) ([]store.BatchResult, error) {
	if err := l.wait(ctx); err != nil {
		return nil, err
	}
	res := make([]store.BatchResult, len(as))
	for i, a := range as {
		res[i].DocInfo, res[i].Err = l.mark(a)
	}
	return res, nil
}

func (l *Ledger) wait(ctx context.Context) error {
	if l.Delay > 0 {
		t := time.NewTimer(l.Delay)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
		}
	}
	return ctx.Err()
}

func (l *Ledger) mark(a *store.Activation) (store.DocInfo, error) {
	if err := store.ValidateActivation(a); err != nil {
		return store.DocInfo{}, err
	}
	if l.MaxRecordBytes > 0 {
		size := len(a.Response.Result)
		for _, s := range a.Logs {
			size += len(s)
		}
		if size > l.MaxRecordBytes {
			return store.DocInfo{}, &store.InvalidError{Field: "document", Value: strconv.Itoa(size) + " bytes",
				Reason: "exceeds the primary's limit of " + strconv.Itoa(l.MaxRecordBytes) + " bytes"}
		}
	}
	run, i, ok := Index(a.ActivationID)
	if !ok || run != l.run || i >= l.n || a.Namespace != Namespace {
		return store.DocInfo{}, &store.InvalidError{Field: "activationId", Value: a.DocID(), Reason: "is not one of this ledger's activations"}
	}
	w, bit := &l.bits[i/64], uint64(1)<<(i%64)
	for {
		old := w.Load()
		if old&bit != 0 {
			return store.DocInfo{}, store.ConflictError(a.DocID())
		}
		if w.CompareAndSwap(old, old|bit) {
			l.held.Add(1)
			return store.DocInfo{ID: a.DocID()}, nil
		}
	}
}

// Get reports whether the activation is held; the record returned carries
// only its namespace and id.
func (l *Ledger) Get(_ context.Context, namespace, activationID string, _ store.UserContext) (*store.Activation, error) {
	run, i, ok := Index(activationID)
	if !ok || run != l.run || i >= l.n || namespace != Namespace || !l.Has(i) {
		return nil, store.NotFoundError(namespace, activationID)
	}
	return &store.Activation{Namespace: namespace, ActivationID: activationID}, nil
}

// Delete is not supported: a ledger only grows.
func (l *Ledger) Delete(context.Context, string, string, store.UserContext) error {
	return errors.New("losstest: Ledger does not delete")
}

// List is not supported: a ledger keeps no record.
func (l *Ledger) List(context.Context, store.Query, store.UserContext) ([]*store.Activation, error) {
	return nil, errors.New("losstest: Ledger keeps no record to list")
}

// Count is the number of activations held in Namespace, minus q.Skip.
func (l *Ledger) Count(_ context.Context, q store.Query, _ store.UserContext) (int, error) {
	if q.Namespace != Namespace {
		return 0, nil
	}
	return max(l.Len()-q.Skip, 0), nil
}

// popcount is the number of activations held, recounted from the bitmap.
func (l *Ledger) popcount() int {
	n := 0
	for w := range l.bits {
		n += bits.OnesCount64(l.bits[w].Load())
	}
	return n
}

// Conflicted counts the documents of a CouchDB database that have more
// than one leaf revision (a "_conflicts" member), design documents
// included, reading _all_docs with include_docs and conflicts in pages; it
// returns up to 10 of their ids.
func Conflicted(ctx context.Context, base, db string) (n int, first []string, err error) {
	const page = 2_000
	start := ""
	for {
		q := url.Values{"limit": {strconv.Itoa(page + 1)}, "include_docs": {"true"}, "conflicts": {"true"}}
		if start != "" {
			q.Set("startkey", strconv.Quote(start))
		}
		status, body, err := couchtest.Do(ctx, "GET", base, "/"+url.PathEscape(db)+"/_all_docs?"+q.Encode(), nil)
		if err != nil {
			return 0, nil, err
		}
		if status != 200 {
			return 0, nil, fmt.Errorf("_all_docs of %s: HTTP %d: %.200s", db, status, body)
		}
		var res struct {
			Rows []struct {
				ID  string `json:"id"`
				Doc struct {
					Conflicts []string `json:"_conflicts"`
				} `json:"doc"`
			} `json:"rows"`
		}
		if err := json.Unmarshal(body, &res); err != nil {
			return 0, nil, fmt.Errorf("_all_docs of %s: %w", db, err)
		}
		rows := res.Rows
		more := len(rows) > page
		if more {
			start = rows[page].ID
			rows = rows[:page]
		}
		for _, r := range rows {
			if len(r.Doc.Conflicts) > 0 {
				n++
				if len(first) < 10 {
					first = append(first, r.ID)
				}
			}
		}
		if !more {
			return n, first, nil
		}
	}
}
