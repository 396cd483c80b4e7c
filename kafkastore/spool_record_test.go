package kafkastore

import (
	"bytes"
	"errors"
	"testing"

	"github.com/segmentio/kafka-go"
)

func TestSpoolRecordRoundTrip(t *testing.T) {
	for _, m := range []kafka.Message{
		{Key: []byte("0123abcd"), Value: []byte(`{"x":1}`), Headers: []kafka.Header{{Key: "h", Value: []byte("v")}, {Key: "nil"}}},
		{Value: []byte("v")},
		{Key: []byte{}, Value: []byte{}, Headers: []kafka.Header{{Key: "", Value: []byte{}}}},
	} {
		b := appendSpoolRecord(nil, "completed0", &m)
		topic, got, err := decodeSpoolRecord(b)
		if err != nil {
			t.Fatalf("decode %q: %v", b, err)
		}
		if topic != "completed0" || !bytes.Equal(got.Key, m.Key) || (got.Key == nil) != (m.Key == nil) || !bytes.Equal(got.Value, m.Value) || len(got.Headers) != len(m.Headers) {
			t.Fatalf("round trip of %+v gave %q %+v", m, topic, got)
		}
		for i, h := range m.Headers {
			g := got.Headers[i]
			if g.Key != h.Key || !bytes.Equal(g.Value, h.Value) || (g.Value == nil) != (h.Value == nil) {
				t.Fatalf("header %d: %+v, want %+v", i, g, h)
			}
		}
	}
}

func FuzzDecodeSpoolRecord(f *testing.F) {
	f.Add(appendSpoolRecord(nil, "t", &kafka.Message{Key: []byte("k"), Value: []byte("v"), Headers: []kafka.Header{{Key: "a", Value: []byte("b")}}}))
	f.Add([]byte{spoolRecordV1, 0})
	f.Add([]byte{2})
	f.Fuzz(func(t *testing.T, b []byte) {
		topic, m, err := decodeSpoolRecord(b)
		if err != nil {
			if !errors.Is(err, errSpoolRecord) {
				t.Fatalf("error %v does not match errSpoolRecord", err)
			}
			return
		}
		// Varints have more than one encoding: compare what they decode to.
		again := appendSpoolRecord(nil, topic, &m)
		topic2, m2, err := decodeSpoolRecord(again)
		if err != nil || topic2 != topic || !bytes.Equal(m2.Key, m.Key) || !bytes.Equal(m2.Value, m.Value) || len(m2.Headers) != len(m.Headers) {
			t.Fatalf("decoded %q, encoded back %q, decoded again %q %+v (%v)", b, again, topic2, m2, err)
		}
	})
}
