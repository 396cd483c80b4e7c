// Package spool is a durable local queue in front of Kafka: a small
// segment log in one directory. The Kafka store appends each encoded
// record and answers its caller once the record is on disk; a publisher
// reads the records in order, sends them, and acknowledges them.
//
// # Guarantee
//
// Append returns nil only after the record was written and fdatasynced.
// Such a record survives a crash (kill -9, power loss on a disk that
// honours flushes) and is read again after Open until it is acknowledged
// and the acknowledgement is durable (the cursor is written every
// CursorInterval and at Close). So the only duplicates are the records
// acknowledged within the last CursorInterval before a crash, and records
// whose Append failed with a *WriteError but whose bytes reached the disk
// anyway. Concurrent Appends share syncs (group commit): a writer goroutine
// writes each group of queued records with one write while a syncer
// goroutine's fdatasync covers every group written before it started; no
// timer ever answers before the sync. A failed fdatasync fails every
// Append it covered and retires the segment file: it is never synced
// again (the kernel may have dropped its dirty pages), and the next group
// goes to a new segment.
//
// The spool is bounded: when the live segments would exceed MaxBytes, an
// Append waits for the publisher to free room and then fails with
// ErrFull; nothing is dropped. Open never fails for damaged files: torn
// tails are cut, segments damaged in the middle are copied to
// dir/quarantine and their valid frames kept, and the damage is counted
// in Stats. One Spool owns a directory (flock on dir/LOCK).
//
// # Files
//
// Segment files are named by the seq of their first record, in 20
// decimal digits with the suffix .seg (00000000000000000001.seg), and are
// preallocated (fallocate) so that a data sync never changes their size.
// A segment is a run of frames followed by zeros; a frame is a 28-byte
// little-endian header and the payload:
//
//	offset size
//	0      4    magic 0x53504c31
//	4      4    payload length
//	8      8    seq: strictly increasing across segments and restarts
//	16     8    append time, unix nanoseconds
//	24     4    CRC32C (Castagnoli) of bytes 0..23 and the payload
//	28     n    payload
//
// The cursor file dir/cursor holds the next unacknowledged seq: magic
// 0x53504c43 (4 bytes), the seq (8), the CRC32C of those 12 bytes (4). It
// is replaced by writing dir/cursor.tmp, syncing it, renaming it and
// syncing the directory; a segment is deleted only once a durable cursor
// passed all its records. The directory is synced after every create,
// rename and delete.
package spool
