package spool

import (
	"encoding/binary"
	"hash/crc32"
)

// A frame is a 28-byte header and the payload:
//
//	offset size
//	0      4    magic 0x53504c31, little endian (bytes "1LPS", none zero)
//	4      4    payload length
//	8      8    seq
//	16     8    append time, unix nanoseconds
//	24     4    CRC32C (Castagnoli) of bytes 0..23 and the payload
const (
	frameMagic = 0x53504c31
	headerSize = 28
)

var (
	le         = binary.LittleEndian
	castagnoli = crc32.MakeTable(crc32.Castagnoli)
	magicBytes = le.AppendUint32(nil, frameMagic)
)

type header struct {
	length   uint32
	seq      uint64
	appended int64
	crc      uint32
}

func putFrame(b []byte, seq uint64, appended int64, payload []byte) {
	le.PutUint32(b[0:], frameMagic)
	le.PutUint32(b[4:], uint32(len(payload)))
	le.PutUint64(b[8:], seq)
	le.PutUint64(b[16:], uint64(appended))
	copy(b[headerSize:], payload)
	le.PutUint32(b[24:], crc32.Update(crc32.Checksum(b[:24], castagnoli), castagnoli, payload))
}

// parseHeader reports whether b starts with the magic.
func parseHeader(b []byte) (header, bool) {
	if le.Uint32(b) != frameMagic {
		return header{}, false
	}
	return header{
		length:   le.Uint32(b[4:]),
		seq:      le.Uint64(b[8:]),
		appended: int64(le.Uint64(b[16:])),
		crc:      le.Uint32(b[24:]),
	}, true
}

func (h header) frameLen() int64 { return headerSize + int64(h.length) }

// headerCRC starts the checksum that the payload completes.
func headerCRC(b []byte) uint32 { return crc32.Checksum(b[:24], castagnoli) }

// The cursor file is 16 bytes: magic 0x53504c43, the next unacknowledged
// seq, and the CRC32C of the first 12 bytes.
const (
	cursorMagic = 0x53504c43
	cursorSize  = 16
)

func encodeCursor(next uint64) []byte {
	b := make([]byte, cursorSize)
	le.PutUint32(b, cursorMagic)
	le.PutUint64(b[4:], next)
	le.PutUint32(b[12:], crc32.Checksum(b[:12], castagnoli))
	return b
}

func decodeCursor(b []byte) (uint64, bool) {
	if len(b) != cursorSize || le.Uint32(b) != cursorMagic ||
		le.Uint32(b[12:]) != crc32.Checksum(b[:12], castagnoli) {
		return 0, false
	}
	return le.Uint64(b[4:]), true
}
