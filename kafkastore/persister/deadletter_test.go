package persister

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/go-whisk/activationstore/codec"
	"github.com/go-whisk/activationstore/internal/activationtest"
	"github.com/go-whisk/activationstore/internal/kafkatest"
	"github.com/go-whisk/activationstore/primary/memory"
	"github.com/go-whisk/activationstore/store"
)

// rejectingPrimary answers store.ErrInvalid for the activation ids in
// invalid, as a primary with stricter rules than the persister would.
type rejectingPrimary struct {
	memStore
	invalid map[string]bool
}

type memStore = *memory.Store

func (r *rejectingPrimary) StoreBatch(ctx context.Context, as []*store.Activation, uc store.UserContext) ([]store.BatchResult, error) {
	res := make([]store.BatchResult, len(as))
	var pass []*store.Activation
	var idx []int
	for i, a := range as {
		if r.invalid[a.ActivationID] {
			res[i].Err = &store.InvalidError{Field: "activationId", Reason: "rejected by the test primary"}
			continue
		}
		pass, idx = append(pass, a), append(idx, i)
	}
	stored, err := r.memStore.StoreBatch(ctx, pass, uc)
	if err != nil {
		return nil, err
	}
	for j, x := range stored {
		res[idx[j]] = x
	}
	return res, nil
}

func readDeadLetters(t *testing.T, b *kafkatest.Broker, topic string, n int) []kafka.Message {
	t.Helper()
	r := kafka.NewReader(kafka.ReaderConfig{Brokers: []string{b.Addr()}, Topic: topic, Partition: 0, MaxWait: 100 * time.Millisecond})
	defer r.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	var out []kafka.Message
	for len(out) < n {
		m, err := r.ReadMessage(ctx)
		if err != nil {
			t.Fatalf("read dead letters (%d of %d): %v", len(out), n, err)
		}
		out = append(out, m)
	}
	return out
}

func headerMap(m kafka.Message) map[string]string {
	h := map[string]string{}
	for _, x := range m.Headers {
		h[x.Key] = string(x.Value)
	}
	return h
}

func TestPersisterDeadLettersPoisonRecords(t *testing.T) {
	b := kafkatest.Start(t)
	topic := kafkatest.Topic(t, "completed-others")
	b.CreateTopic(t, topic, 1, nil)
	dlq := kafkatest.Topic(t, "completed-dead") // matches the pattern: must still be excluded

	good := []*store.Activation{activationtest.New("guest"), activationtest.New("guest"), activationtest.New("guest")}
	design := activationtest.New("_design") // decodes, but store.ValidateActivation refuses it
	rejected := activationtest.New("guest") // the primary refuses it
	missing, err := os.ReadFile("../../codec/testdata/vectors/reject-result-activation-missing-fields.json")
	if err != nil {
		t.Fatal(err)
	}
	values := [][]byte{
		resultMessage(t, good[0]),
		[]byte("not json at all"),  // offset 1: malformed
		resultMessage(t, design),   // offset 2: invalid in the persister
		resultMessage(t, good[1]),  // offset 3
		missing,                    // offset 4: malformed
		resultMessage(t, rejected), // offset 5: invalid in the primary
		[]byte(`{"transid":["sid",1],"response":"2fbc6d5e5b6a4c2fbc6d5e5b6a7c2f9e"}`), // id only: skipped
		resultMessage(t, good[2]),
	}
	produceValues(t, b, topic, values...)

	mem := memory.New()
	primary := &rejectingPrimary{memStore: mem, invalid: map[string]bool{rejected.ActivationID: true}}
	group := kafkatest.Topic(t, "group")
	p := newTestPersister(t, b, primary, WithGroupID(group), WithDeadLetterTopic(dlq),
		WithTopicPattern(regexp.MustCompile("^"+regexp.QuoteMeta(topic)+"$|^"+regexp.QuoteMeta(dlq)+"$")))
	runPersister(t, p)
	waitCommittedToEnd(t, b, group, topic, 1)
	checkAllStored(t, mem, "guest", good)

	want := map[int64]string{1: DeadLetterMalformed, 2: DeadLetterInvalid, 4: DeadLetterMalformed, 5: DeadLetterInvalid}
	for _, m := range readDeadLetters(t, b, dlq, len(want)) {
		h := headerMap(m)
		off, err := strconv.ParseInt(h[DeadLetterHeaderOffset], 10, 64)
		if err != nil || h[DeadLetterHeaderTopic] != topic || h[DeadLetterHeaderPartition] != "0" {
			t.Fatalf("dead letter headers %v: want source %s/0 and an offset", h, topic)
		}
		if h[DeadLetterHeaderReason] != want[off] || h[DeadLetterHeaderError] == "" {
			t.Errorf("dead letter of offset %d: reason %q error %q, want reason %q and an error", off, h[DeadLetterHeaderReason], h[DeadLetterHeaderError], want[off])
		}
		if string(m.Value) != string(values[off]) {
			t.Errorf("dead letter of offset %d: value %q, want the original %q", off, m.Value, values[off])
		}
		delete(want, off)
	}
	if len(want) != 0 {
		t.Errorf("offsets not dead-lettered: %v", want)
	}
	s := p.Stats()
	if s.DeadLettered != 4 || s.Skipped != 1 || s.Persisted != 3 {
		t.Errorf("stats dead-lettered %d skipped %d persisted %d; want 4, 1, 3", s.DeadLettered, s.Skipped, s.Persisted)
	}
	for _, pl := range s.Partitions {
		if pl.Topic == dlq {
			t.Errorf("the persister follows its own dead-letter topic")
		}
	}
}

func TestPersisterRetriesDeadLetterPublish(t *testing.T) {
	b := kafkatest.StartFake(t) // fault injection: kfake only
	topic := kafkatest.Topic(t, "completed-others")
	b.CreateTopic(t, topic, 1, nil)
	dlq := kafkatest.Topic(t, "dlq")
	var failures atomic.Int32
	b.Cluster().ControlKey(kmsg.Produce.Int16(), func(req kmsg.Request) (kmsg.Response, error, bool) {
		pr := req.(*kmsg.ProduceRequest)
		if len(pr.Topics) != 1 || pr.Topics[0].Topic != dlq || failures.Load() >= 3 {
			b.Cluster().KeepControl()
			return nil, nil, false
		}
		b.Cluster().KeepControl()
		failures.Add(1)
		resp := pr.ResponseKind().(*kmsg.ProduceResponse)
		for _, rt := range pr.Topics {
			st := kmsg.NewProduceResponseTopic()
			st.Topic = rt.Topic
			for _, rp := range rt.Partitions {
				sp := kmsg.NewProduceResponseTopicPartition()
				sp.Partition = rp.Partition
				sp.ErrorCode = kerr.NotEnoughReplicas.Code
				st.Partitions = append(st.Partitions, sp)
			}
			resp.Topics = append(resp.Topics, st)
		}
		return resp, nil, true
	})
	a := activationtest.New("guest")
	produceValues(t, b, topic, []byte("poison"), resultMessage(t, a))
	mem := memory.New()
	group := kafkatest.Topic(t, "group")
	p := newTestPersister(t, b, mem, WithGroupID(group), WithDeadLetterTopic(dlq), WithTopicPattern(exactTopics(topic)))
	runPersister(t, p)
	waitUntil(t, 15*time.Second, "the record after the poison persisted", func() bool { return mem.Len() == 1 })
	waitCommittedToEnd(t, b, group, topic, 1)
	readDeadLetters(t, b, dlq, 1)
	if s := p.Stats(); s.DeadLetterRetries < 3 || s.DeadLettered != 1 {
		t.Errorf("dead-letter retries %d, dead-lettered %d; want >= 3 and 1", s.DeadLetterRetries, s.DeadLettered)
	}
}

// Invoker acks on completed<N> mixed with completed-others, as the default
// pattern follows them.
func TestPersisterInvokerAcks(t *testing.T) {
	b := kafkatest.Start(t)
	prefix := kafkatest.Topic(t, "completed")
	acksTopic, othersTopic := prefix+"0", prefix+"-others"
	b.CreateTopic(t, acksTopic, 1, nil)
	b.CreateTopic(t, othersTopic, 2, nil)

	files, err := filepath.Glob("../../codec/testdata/vectors/acks/*.json")
	if err != nil || len(files) < 10 {
		t.Fatalf("ack vectors: %d files, %v", len(files), err)
	}
	more, _ := filepath.Glob("../../codec/testdata/vectors/ack-*.json")
	files = append(files, more...)
	var acks [][]byte
	docs := map[string]*store.Activation{} // what must be stored
	var withActivation, without int
	for _, f := range files {
		v, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		m, err := codec.Decode(v)
		if err != nil {
			t.Fatalf("vector %s does not decode: %v", f, err)
		}
		acks = append(acks, v)
		if a := m.Activation(); a != nil {
			if err := store.ValidateActivation(a); err != nil {
				t.Fatalf("vector %s: %v", f, err)
			}
			withActivation++
			docs[a.DocID()] = a
		} else {
			without++
		}
	}
	if withActivation < 5 || without < 5 {
		t.Fatalf("vectors: %d with an activation, %d without; want both kinds", withActivation, without)
	}
	produceValues(t, b, acksTopic, acks...)
	others := produceActivations(t, b, othersTopic, "others", 200)
	produceValues(t, b, acksTopic, acks...) // again: conflicts

	mem := memory.New()
	group := kafkatest.Topic(t, "group")
	p := newTestPersister(t, b, mem, WithGroupID(group), WithTopicPattern(regexp.MustCompile("^"+regexp.QuoteMeta(prefix)+".*")))
	runPersister(t, p)
	waitCommittedToEnd(t, b, group, acksTopic, 1)
	waitCommittedToEnd(t, b, group, othersTopic, 2)
	checkAllStored(t, mem, "others", others)
	for id, a := range docs {
		got, err := mem.Get(context.Background(), a.Namespace, a.ActivationID, store.UserContext{})
		if err != nil || got.ActivationID != a.ActivationID || string(got.Response.Result) != string(a.Response.Result) {
			t.Errorf("ack activation %s: got %v, %v", id, got, err)
		}
	}
	s := p.Stats()
	if s.Skipped != int64(2*without) || s.Persisted != int64(200+len(docs)) || s.Conflicts != int64(2*withActivation-len(docs)) || s.DeadLettered != 0 {
		t.Errorf("stats skipped %d persisted %d conflicts %d dead %d; want %d, %d, %d, 0",
			s.Skipped, s.Persisted, s.Conflicts, s.DeadLettered, 2*without, 200+len(docs), 2*withActivation-len(docs))
	}
}
