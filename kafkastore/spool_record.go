package kafkastore

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/segmentio/kafka-go"
)

// A spooled record is the Kafka record exactly as it will be produced:
// topic, key, headers and value, so that the publisher needs nothing of the
// Store that wrote it (a process restarted with other settings replays
// what the earlier one spooled, unchanged).
//
//	version  byte (spoolRecordV1)
//	topic    uvarint length, bytes
//	key      varint length (-1: nil), bytes
//	headers  uvarint count, then per header: uvarint length, key bytes,
//	         varint length (-1: nil), value bytes
//	value    the remaining bytes
const spoolRecordV1 = 1

// errSpoolRecord reports a spooled record this version cannot decode.
var errSpoolRecord = errors.New("kafkastore: undecodable spooled record")

func appendSpoolRecord(b []byte, topic string, m *kafka.Message) []byte {
	b = append(b, spoolRecordV1)
	b = binary.AppendUvarint(b, uint64(len(topic)))
	b = append(b, topic...)
	b = appendNullable(b, m.Key)
	b = binary.AppendUvarint(b, uint64(len(m.Headers)))
	for _, h := range m.Headers {
		b = binary.AppendUvarint(b, uint64(len(h.Key)))
		b = append(b, h.Key...)
		b = appendNullable(b, h.Value)
	}
	return append(b, m.Value...)
}

func appendNullable(b, v []byte) []byte {
	if v == nil {
		return binary.AppendVarint(b, -1)
	}
	b = binary.AppendVarint(b, int64(len(v)))
	return append(b, v...)
}

// decodeSpoolRecord returns the record's topic and message. The message's
// slices alias b.
func decodeSpoolRecord(b []byte) (topic string, m kafka.Message, err error) {
	d := spoolDecoder{b: b}
	if v := d.byte(); v != spoolRecordV1 {
		return "", m, fmt.Errorf("%w: version %d, want %d (was the spool written by a newer release?)", errSpoolRecord, v, spoolRecordV1)
	}
	topic = string(d.bytes(d.uvarint()))
	m.Key = d.nullable()
	if n := d.uvarint(); n > 0 && d.err == nil {
		if n > uint64(len(d.b)) {
			d.fail("header count")
		} else {
			m.Headers = make([]kafka.Header, n)
			for i := range m.Headers {
				m.Headers[i].Key = string(d.bytes(d.uvarint()))
				m.Headers[i].Value = d.nullable()
			}
		}
	}
	if d.err != nil {
		return "", kafka.Message{}, d.err
	}
	if topic == "" {
		return "", kafka.Message{}, fmt.Errorf("%w: no topic", errSpoolRecord)
	}
	m.Value = d.b
	return topic, m, nil
}

type spoolDecoder struct {
	b   []byte
	err error
}

func (d *spoolDecoder) fail(what string) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: bad %s", errSpoolRecord, what)
	}
	d.b = nil
}

func (d *spoolDecoder) byte() byte {
	if len(d.b) == 0 {
		d.fail("version")
		return 0
	}
	v := d.b[0]
	d.b = d.b[1:]
	return v
}

func (d *spoolDecoder) uvarint() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail("length")
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *spoolDecoder) bytes(n uint64) []byte {
	if n > uint64(len(d.b)) {
		d.fail("length")
		return nil
	}
	v := d.b[:n:n]
	d.b = d.b[n:]
	return v
}

func (d *spoolDecoder) nullable() []byte {
	n, k := binary.Varint(d.b)
	switch {
	case k <= 0 || n < -1:
		d.fail("length")
		return nil
	case n == -1:
		d.b = d.b[k:]
		return nil
	}
	d.b = d.b[k:]
	if v := d.bytes(uint64(n)); v != nil {
		return v
	}
	return []byte{}
}
