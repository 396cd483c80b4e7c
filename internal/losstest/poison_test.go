package losstest

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/go-whisk/activationstore/internal/kafkatest"
	"github.com/go-whisk/activationstore/kafkastore"
	"github.com/go-whisk/activationstore/kafkastore/persister"
)

// A kind of poison record.
type poison struct {
	name   string
	reason string // the expected persister.DeadLetterHeaderReason
	errHas string // a text the DeadLetterHeaderError header must contain
	make   func(t *testing.T, rng *rand.Rand, k int) []byte
}

// poisons are the kinds of bad records of the test.
func poisons(run uint32, n int) []poison {
	good := func(t *testing.T, k int) []byte { return Record(t, run, n+k).Value }
	mustReplace := func(t *testing.T, b []byte, old, new string) []byte {
		if !bytes.Contains(b, []byte(old)) {
			t.Fatalf("the record has no %s to replace: %s", old, b)
		}
		return bytes.Replace(b, []byte(old), []byte(new), 1)
	}
	return []poison{
		{"random-bytes", persister.DeadLetterMalformed, "", func(t *testing.T, rng *rand.Rand, _ int) []byte {
			b := make([]byte, 1+rng.IntN(512))
			for i := range b {
				b[i] = byte(rng.UintN(256))
			}
			b[0] = '{' // a record that looks like JSON at first
			return b
		}},
		{"truncated-json", persister.DeadLetterMalformed, "", func(t *testing.T, rng *rand.Rand, k int) []byte {
			b := good(t, k)
			return b[:1+rng.IntN(len(b)-2)]
		}},
		{"wrong-type-name", persister.DeadLetterMalformed, "name", func(t *testing.T, _ *rand.Rand, k int) []byte {
			return mustReplace(t, good(t, k), `"name":"loss"`, `"name":42`)
		}},
		{"wrong-type-status", persister.DeadLetterMalformed, "statusCode", func(t *testing.T, _ *rand.Rand, k int) []byte {
			return mustReplace(t, good(t, k), `"statusCode":0`, `"statusCode":"zero"`)
		}},
		{"design-namespace", persister.DeadLetterInvalid, "namespace", func(t *testing.T, _ *rand.Rand, k int) []byte {
			return mustReplace(t, good(t, k), `"namespace":"guest"`, `"namespace":"_design/x"`)
		}},
		{"oversize", persister.DeadLetterInvalid, "exceeds the primary's limit", func(t *testing.T, rng *rand.Rand, k int) []byte {
			size := 100 << 10
			if k%2 == 0 {
				size = 3 << 20 // above the in-flight cap too: it must pass alone
			}
			return mustReplace(t, good(t, k), `"result":{"i":`+strconv.Itoa(n+k)+`}`,
				`"result":{"pad":"`+strings.Repeat("x", size)+`"}`)
		}},
	}
}

// 1% of poison records mixed into good ones: every good one persisted,
// every bad one in the dead-letter topic with the headers naming its
// source and the reason.
func TestPoisonRecordsDeadLettered(t *testing.T) {
	n, partitions := 10_000, 4
	nbad := n / 100
	seed := uint64(time.Now().UnixNano())
	rng := rand.New(rand.NewPCG(seed, 1))
	b := kafkatest.Start(t)
	topic := kafkatest.Topic(t, "completed")
	b.CreateTopic(t, topic, partitions, map[string]string{"max.message.bytes": strconv.Itoa(8 << 20)})
	dlq := kafkatest.Topic(t, "dlq")

	run := NewRun()
	kinds := poisons(run, n)
	msgs := Records(t, run, n)
	type bad struct {
		kind      poison
		value     []byte
		partition int
		offset    int64
	}
	bads := map[string]*bad{} // by key
	for k := range nbad {
		kind := kinds[k%len(kinds)]
		key := fmt.Sprintf("bad-%d-%s", k, kind.name)
		v := kind.make(t, rng, k)
		bads[key] = &bad{kind: kind, value: v}
		at := rng.IntN(len(msgs) + 1)
		msgs = append(msgs[:at], append([]kafka.Message{{Key: []byte(key), Value: v}}, msgs[at:]...)...)
	}
	Produce(t, b.Addr(), topic, msgs)
	for _, m := range ReadTopic(t, b, topic) {
		if bd := bads[string(m.Key)]; bd != nil {
			bd.partition, bd.offset = m.Partition, m.Offset
		}
	}

	ledger := NewLedger(run, n)
	ledger.MaxRecordBytes = 64 << 10
	group := kafkatest.Topic(t, "group")
	p, err := persister.New(ledger,
		kafkastore.WithBrokers(b.Addr()),
		persister.WithGroupID(group),
		persister.WithTopicPattern(regexp.MustCompile("^"+regexp.QuoteMeta(topic)+"$")),
		persister.WithDeadLetterTopic(dlq),
		persister.WithGroupTimeouts(6*time.Second, 6*time.Second, 500*time.Millisecond),
		persister.WithBatch(500, 4<<20, 10*time.Millisecond),
		persister.WithMaxInFlightBytes(2<<20),
		persister.WithCommitInterval(200*time.Millisecond),
	)
	if err != nil {
		t.Fatalf("persister.New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	start := time.Now()
	waitFor(t, 2*time.Minute, "every good record persisted and every bad one dead-lettered", func() bool {
		return ledger.Len() == n && p.Stats().DeadLettered >= int64(nbad)
	})
	waitFor(t, time.Minute, "the group to commit to the end", func() bool {
		lag, err := GroupLag(context.Background(), b, group, topic)
		return err == nil && lag == 0
	})
	took := time.Since(start)

	if missing, first := ledger.Missing(10); missing != 0 {
		t.Errorf("%d good records not persisted, first %v", missing, first)
	}
	header := func(m kafka.Message, key string) string {
		for _, h := range m.Headers {
			if h.Key == key {
				return string(h.Value)
			}
		}
		return ""
	}
	found := map[string]int{}
	perReason := map[string]int{}
	var strangers int
	for _, m := range ReadTopic(t, b, dlq) {
		key := string(m.Key)
		bd := bads[key]
		if bd == nil {
			strangers++
			t.Errorf("dead-letter record %q is not a poison record (reason %q, error %q)",
				key, header(m, persister.DeadLetterHeaderReason), header(m, persister.DeadLetterHeaderError))
			continue
		}
		found[key]++
		reason, errText := header(m, persister.DeadLetterHeaderReason), header(m, persister.DeadLetterHeaderError)
		perReason[reason]++
		switch {
		case header(m, persister.DeadLetterHeaderTopic) != topic ||
			header(m, persister.DeadLetterHeaderPartition) != strconv.Itoa(bd.partition) ||
			header(m, persister.DeadLetterHeaderOffset) != strconv.FormatInt(bd.offset, 10):
			t.Errorf("%s: source headers %s/%s@%s, want %s/%d@%d", key, header(m, persister.DeadLetterHeaderTopic),
				header(m, persister.DeadLetterHeaderPartition), header(m, persister.DeadLetterHeaderOffset), topic, bd.partition, bd.offset)
		case reason != bd.kind.reason:
			t.Errorf("%s: reason %q (error %q), want %q", key, reason, errText, bd.kind.reason)
		case errText == "" || !strings.Contains(errText, bd.kind.errHas):
			t.Errorf("%s: error header %q, want one mentioning %q", key, errText, bd.kind.errHas)
		case !bytes.Equal(m.Value, bd.value):
			t.Errorf("%s: the dead-lettered value differs from the record's", key)
		}
	}
	var missing []string
	dups := 0
	for key := range bads {
		switch c := found[key]; {
		case c == 0:
			missing = append(missing, key)
		case c > 1:
			dups += c - 1
		}
	}
	if len(missing) > 0 {
		t.Errorf("%d poison records not in the dead-letter topic: %v", len(missing), missing)
	}
	s := p.Stats()
	if s.DeadLettered != int64(nbad) || s.Persisted != int64(n) {
		t.Errorf("Stats: persisted %d dead-lettered %d, want %d and %d", s.Persisted, s.DeadLettered, n, nbad)
	}
	t.Logf("SUMMARY %s: good=%d bad=%d (%d kinds) partitions=%d; drained in %v; persisted=%d deadLettered=%d (malformed=%d invalid=%d) found in DLQ=%d missing=%d duplicates=%d strangers=%d retries=%d deadLetterRetries=%d maxInFlight=%d",
		t.Name(), n, nbad, len(kinds), partitions, took.Round(time.Millisecond), s.Persisted, s.DeadLettered,
		perReason[persister.DeadLetterMalformed], perReason[persister.DeadLetterInvalid], len(found), len(missing), dups, strangers,
		s.Retries, s.DeadLetterRetries, s.MaxInFlightBytes)
}
