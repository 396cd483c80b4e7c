package hardeningtest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/go-whisk/activationstore/codec"
	"github.com/go-whisk/activationstore/internal/activationtest"
	"github.com/go-whisk/activationstore/internal/couchtest"
	"github.com/go-whisk/activationstore/internal/kafkatest"
	"github.com/go-whisk/activationstore/internal/logtest"
	"github.com/go-whisk/activationstore/kafkastore/persister"
	"github.com/go-whisk/activationstore/primary/couchdb"
	"github.com/go-whisk/activationstore/store"
)

// Placeholders in a valid record that hostileRecord replaces: the codec
// refuses to encode hostile values, but a record on a topic comes from
// anywhere.
const (
	placeholderNS   = "nsplaceholder"
	placeholderName = "nameplaceholder"
)

// hostileRecord encodes a valid activation (as a ResultMessage, or as the
// activation itself when plain) and then swaps one field's JSON string for
// value.
func hostileRecord(t *testing.T, field, value string, plain bool) []byte {
	t.Helper()
	a := activationtest.New(placeholderNS)
	a.Name = placeholderName
	var b []byte
	var err error
	if plain {
		b, err = codec.MarshalActivation(a)
	} else {
		b, err = codec.MarshalResultMessage(codec.TransactionID{ID: "tid-hostile", Start: a.Start}, a)
	}
	if err != nil {
		t.Fatal(err)
	}
	quoted, err := json.Marshal(value)
	if err != nil {
		t.Fatal(err)
	}
	old := map[string]string{"namespace": placeholderNS, "name": placeholderName, "activationId": a.ActivationID}[field]
	out := bytes.ReplaceAll(b, []byte(`"`+old+`"`), quoted)
	if bytes.Equal(out, b) {
		t.Fatalf("placeholder of %s not found in %s", field, b)
	}
	return out
}

// Hostile records arriving on a followed topic are dead-lettered with a
// reason, nothing reaches CouchDB, and the partition moves on to the good
// record behind them.
func TestHostileRecordsDeadLettered(t *testing.T) {
	b := kafkatest.Start(t)
	topic := kafkatest.Topic(t, "completed-hostile")
	b.CreateTopic(t, topic, 1, nil)
	base, db := couchtest.URL(t), couchtest.DBName(t)
	couch, err := couchdb.New(ctxFor(t, 30*time.Second), base, db)
	if err != nil {
		t.Fatalf("couchdb.New: %v", err)
	}
	defer couch.Close()
	rowsBefore := couchTotalRows(t, base, db)

	hostile := []struct {
		field, value string
		plain        bool
	}{
		{"namespace", "_design/x", false},
		{"namespace", "_design/x", true},
		{"namespace", "../x", false},
		{"namespace", "a/../../b", true},
		{"namespace", "guest\x00", false},
		{"namespace", "gu\u0435st", false},
		{"activationId", pad32("../"), false},
		{"activationId", "../x", true},
		{"activationId", "0123456789ABCDEF0123456789ABCDEF", false},
		{"activationId", pad32("a%2Fb"), false},
		{"name", "../../_design/x", false},
		{"name", "a\nb", true},
	}
	values := make([][]byte, 0, len(hostile)+1)
	for _, h := range hostile {
		values = append(values, hostileRecord(t, h.field, h.value, h.plain))
	}
	good := activationtest.New("guest")
	goodValue, err := codec.MarshalResultMessage(codec.TransactionID{ID: "tid-good", Start: good.Start}, good)
	if err != nil {
		t.Fatal(err)
	}
	values = append(values, goodValue)
	produceValues(t, b.Addr(), topic, values)

	var logs logtest.Buffer
	opts := persisterOptions(t, b.Addr(), debugLogger(&logs), topic)
	dlq := kafkatest.Topic(t, "dlq")
	p, err := persister.New(couch, append(opts, persister.WithDeadLetterTopic(dlq))...)
	if err != nil {
		t.Fatal(err)
	}
	stop := runUntilCancel(t, p, 10*time.Second)
	start := time.Now()
	end := int64(len(values))
	deadline := start.Add(30 * time.Second)
	for {
		st := p.Stats()
		if st.Persisted == 1 && st.DeadLettered == int64(len(hostile)) &&
			len(st.Partitions) == 1 && st.Partitions[0].Committed == end {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 30s: stats %+v; want 1 persisted, %d dead-lettered, offset %d committed; logs:\n%s", st, len(hostile), end, logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	elapsed := time.Since(start)
	committed := p.Stats().Partitions[0].Committed
	stop()

	if _, err := couch.Get(context.Background(), good.Namespace, good.ActivationID, store.UserContext{}); err != nil {
		t.Errorf("the good record behind the hostile ones: %v", err)
	}
	rowsAfter := couchTotalRows(t, base, db)
	if rowsAfter != rowsBefore+1 {
		t.Errorf("_all_docs total_rows %d → %d, want only the good record added", rowsBefore, rowsAfter)
	}
	if status, body, _ := couchtest.Do(ctxFor(t, 10*time.Second), http.MethodGet, base, "/"+url.PathEscape(db)+"/_design/x", nil); status != http.StatusNotFound {
		t.Errorf("GET /_design/x: %d %s; want 404", status, body)
	}
	// The escaped form finds nothing either. (Apache CouchDB answers it
	// 401, the PouchDB stand-in 404.)
	escaped := "/" + url.PathEscape("_design/x")
	if status, body, _ := couchtest.Do(ctxFor(t, 10*time.Second), http.MethodGet, base, "/"+url.PathEscape(db)+escaped, nil); status == http.StatusOK || status == 0 {
		t.Errorf("GET %s: %d %s; want no document", escaped, status, body)
	}

	// Every hostile record is on the dead-letter topic, in order, with its
	// source offset, a reason and an error naming the field.
	dead := readAll(t, b.Addr(), dlq, len(hostile))
	reasons := map[string]int{}
	for i, m := range dead {
		h := headers(m)
		if h[persister.DeadLetterHeaderOffset] != fmt.Sprint(i) || h[persister.DeadLetterHeaderTopic] != topic {
			t.Errorf("dead letter %d: source %s/%s, want %s/%d", i, h[persister.DeadLetterHeaderTopic], h[persister.DeadLetterHeaderOffset], topic, i)
		}
		reason := h[persister.DeadLetterHeaderReason]
		reasons[reason]++
		if reason != persister.DeadLetterInvalid && reason != persister.DeadLetterMalformed {
			t.Errorf("dead letter %d: reason %q", i, reason)
		}
		if e := h[persister.DeadLetterHeaderError]; !strings.Contains(e, hostile[i].field) {
			t.Errorf("dead letter %d (%s %q): error header %q does not name the field", i, hostile[i].field, hostile[i].value, e)
		}
		if !bytes.Equal(m.Value, values[i]) {
			t.Errorf("dead letter %d: value changed", i)
		}
	}
	t.Logf("SUMMARY TestHostileRecordsDeadLettered: %d hostile records dead-lettered (reasons %v), good record persisted %v after start, total_rows %d→%d, committed offset %d of %d",
		len(dead), reasons, elapsed.Round(time.Millisecond), rowsBefore, rowsAfter, committed, end)
}

func headers(m kafka.Message) map[string]string {
	h := map[string]string{}
	for _, kv := range m.Headers {
		h[kv.Key] = string(kv.Value)
	}
	return h
}

// produceValues writes values, in order, to partition 0 of topic.
func produceValues(t *testing.T, addr, topic string, values [][]byte) {
	t.Helper()
	tr := &kafka.Transport{}
	defer tr.CloseIdleConnections()
	w := &kafka.Writer{Addr: kafka.TCP(addr), Topic: topic, Transport: tr, Balancer: &kafka.Hash{},
		RequiredAcks: kafka.RequireAll, BatchTimeout: time.Millisecond, BatchSize: len(values)}
	defer w.Close()
	msgs := make([]kafka.Message, len(values))
	for i, v := range values {
		msgs[i] = kafka.Message{Key: []byte("k"), Value: v}
	}
	if err := w.WriteMessages(ctxFor(t, 30*time.Second), msgs...); err != nil {
		t.Fatalf("produce to %s: %v", topic, err)
	}
}

// readAll reads n records from partition 0 of topic.
func readAll(t *testing.T, addr, topic string, n int) []kafka.Message {
	t.Helper()
	r := kafka.NewReader(kafka.ReaderConfig{Brokers: []string{addr}, Topic: topic, Partition: 0, MaxWait: 100 * time.Millisecond})
	defer r.Close()
	ctx := ctxFor(t, 20*time.Second)
	out := make([]kafka.Message, 0, n)
	for len(out) < n {
		m, err := r.ReadMessage(ctx)
		if err != nil {
			if errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("read %d of %d records from %s", len(out), n, topic)
			}
			t.Fatalf("read %s: %v", topic, err)
		}
		out = append(out, m)
	}
	return out
}
