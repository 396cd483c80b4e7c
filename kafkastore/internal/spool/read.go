package spool

import (
	"context"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"time"
)

const (
	minReadChunk = 64 << 10
	maxReadChunk = 16 << 20
)

// Read returns the next durable records in seq order: at most maxRecords,
// and at most maxBytes of payload unless the first record alone is larger.
// It blocks until there is one, ctx ends, or the Spool is closed
// (ErrClosed). Records come from the segment files, not from memory, and
// the caller owns their payloads. Read advances an in-memory position:
// after a restart, reading resumes at the first record not durably
// acknowledged.
func (s *Spool) Read(ctx context.Context, maxRecords, maxBytes int) ([]Record, error) {
	maxRecords, maxBytes = max(maxRecords, 1), max(maxBytes, 1)
	s.readMu.Lock()
	defer s.readMu.Unlock()
	for {
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			return nil, ErrClosed
		}
		g, off, end, ok := s.readableLocked()
		if !ok {
			data := s.dataCh
			s.mu.Unlock()
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-s.closedCh:
			case <-data:
			}
			continue
		}
		acked := s.acked
		s.mu.Unlock()

		recs, next, skipped, skippedBytes, err := readFrames(g, off, end, maxRecords, maxBytes, acked)
		if err != nil {
			return nil, err
		}
		s.mu.Lock()
		s.rseg, s.roff = g, next
		for _, r := range recs {
			s.rwin = append(s.rwin, inflight{seq: r.Seq, appended: r.Appended.UnixNano(), frame: headerSize + int64(len(r.Payload))})
		}
		s.st.Records -= skipped
		s.st.Bytes -= skippedBytes
		s.st.Acked += uint64(skipped)
		s.mu.Unlock()
		if len(recs) > 0 {
			return recs, nil
		}
	}
}

// readableLocked returns where the next record is: its segment, its
// offset and the end of its extent. It moves the read position over
// extent gaps and finished segments.
func (s *Spool) readableLocked() (g *segment, off, end int64, ok bool) {
	if s.rseg == nil {
		if len(s.segs) == 0 {
			return nil, 0, 0, false
		}
		s.rseg, s.roff = s.segs[0], 0
	}
	for {
		g := s.rseg
		for _, e := range g.extents {
			if s.roff < e.end {
				s.roff = max(s.roff, e.start)
				return g, s.roff, e.end, true
			}
		}
		i := s.indexLocked(g)
		if i < 0 || i+1 >= len(s.segs) || g.unsynced > 0 {
			// The active segment, or one whose last groups await their
			// sync (the writer may roll before the syncer covers them):
			// moving on would skip them for good, and an Ack of a later
			// record would pass them.
			return nil, 0, 0, false
		}
		s.rseg, s.roff = s.segs[i+1], 0
	}
}

func (s *Spool) indexLocked(g *segment) int {
	for i, x := range s.segs {
		if x == g {
			return i
		}
	}
	return -1
}

// readFrames reads one chunk of frames from [off, end) with one pread.
// Records at or below acked are skipped (acknowledged before being read).
func readFrames(g *segment, off, end int64, maxRecords, maxBytes int, acked uint64) (recs []Record, next int64, skipped, skippedBytes int64, err error) {
	want := int64(maxBytes) + headerSize*int64(min(maxRecords, 4096))
	want = min(max(want, minReadChunk), maxReadChunk, end-off)
	buf := make([]byte, want)
	if _, err := g.f.ReadAt(buf, off); err != nil {
		return nil, off, 0, 0, fmt.Errorf("spool: read %s at %d: %w", g.path, off, err)
	}
	p, payload := int64(0), 0
	for p+headerSize <= int64(len(buf)) {
		h, ok := parseHeader(buf[p:])
		if !ok && p > 0 {
			break // deliver the frames before the damage; the next read stops at it
		}
		if !ok {
			return nil, off, 0, 0, fmt.Errorf("spool: %s is damaged at offset %d (no frame where one was written): the disk corrupted it", g.path, off+p)
		}
		fl := h.frameLen()
		if p+fl > int64(len(buf)) {
			if p > 0 {
				break
			}
			// One frame larger than the chunk: read it whole.
			buf = make([]byte, fl)
			if _, err := g.f.ReadAt(buf, off); err != nil {
				return nil, off, 0, 0, fmt.Errorf("spool: read %s at %d: %w", g.path, off, err)
			}
		}
		body := buf[p+headerSize : p+fl : p+fl]
		if crc32.Update(headerCRC(buf[p:]), castagnoli, body) != h.crc {
			if p > 0 {
				break
			}
			return nil, off, 0, 0, fmt.Errorf("spool: %s is damaged at offset %d (checksum mismatch): the disk corrupted it", g.path, off+p)
		}
		if h.seq <= acked {
			skipped++
			skippedBytes += fl
			p += fl
			continue
		}
		if len(recs) > 0 && (len(recs) >= maxRecords || payload+len(body) > maxBytes) {
			break
		}
		recs = append(recs, Record{Seq: h.seq, Appended: time.Unix(0, h.appended), Payload: body})
		payload += len(body)
		p += fl
	}
	return recs, off + p, skipped, skippedBytes, nil
}

// Ack marks every record with Seq <= seq delivered. The cursor goroutine
// makes it durable within CursorInterval; until then a crash replays them.
func (s *Spool) Ack(seq uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	seq = min(seq, s.lastDurable) // never ahead of what exists
	if seq <= s.acked {
		return
	}
	s.acked = seq
	i := 0
	for i < len(s.rwin) && s.rwin[i].seq <= seq {
		s.st.Records--
		s.st.Bytes -= s.rwin[i].frame
		s.st.Acked++
		i++
	}
	s.rwin = s.rwin[i:]
	if len(s.rwin) == 0 {
		s.rwin = nil
	}
}

func (s *Spool) cursorLoop() {
	defer close(s.cursorDone)
	t := time.NewTicker(s.o.CursorInterval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			s.persistCursor()
		case done := <-s.flushCh:
			s.persistCursor()
			close(done)
		case <-s.closedCh:
			<-s.writerDone
			s.persistCursor()
			return
		}
	}
}

// flushCursor persists the acknowledgements now (tests).
func (s *Spool) flushCursor() {
	done := make(chan struct{})
	select {
	case s.flushCh <- done:
		<-done
	case <-s.cursorDone:
	}
}

// persistCursor writes the cursor if acknowledgements advanced, then
// deletes the segments it passed.
func (s *Spool) persistCursor() {
	s.mu.Lock()
	next := s.acked + 1
	durable := s.durable
	s.mu.Unlock()
	if next > durable {
		if err := s.writeCursor(next); err != nil {
			s.log.Warn("spool: could not persist the cursor; acknowledged records will be replayed after a crash until it succeeds", "dir", s.dir, "err", err)
			return
		}
		s.mu.Lock()
		s.durable = next
		s.mu.Unlock()
	}
	s.deleteDelivered()
}

func (s *Spool) writeCursor(next uint64) error {
	tmp := filepath.Join(s.dir, cursorTmpFile)
	f, err := s.fs.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	_, err = f.WriteAt(encodeCursor(next), 0)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = s.fs.Rename(tmp, filepath.Join(s.dir, cursorFile))
	}
	if err == nil {
		err = s.fs.SyncDir(s.dir)
	}
	return err
}

// deleteDelivered deletes the oldest segments whose records the durable
// cursor passed, never the active one nor one not yet read past.
func (s *Spool) deleteDelivered() {
	s.mu.Lock()
	s.readableLocked() // moves the read position past finished segments
	n := 0
	for _, g := range s.segs {
		if g == s.active || g == s.rseg || g.lastSeq >= s.durable {
			break
		}
		n++
	}
	del := s.segs[:n:n]
	s.mu.Unlock()
	if n == 0 {
		return
	}
	for _, g := range del {
		_ = g.f.Close()
		if err := s.fs.Remove(g.path); err != nil && !os.IsNotExist(err) {
			s.log.Warn("spool: could not delete a delivered segment; the next Open deletes it", "segment", g.path, "err", err)
		}
	}
	if err := s.fs.SyncDir(s.dir); err != nil {
		s.log.Warn("spool: could not sync the directory after deleting segments", "dir", s.dir, "err", err)
	}
	s.mu.Lock()
	for _, g := range del {
		g.f = nil
	}
	s.segs = s.segs[n:]
	close(s.roomCh)
	s.roomCh = make(chan struct{})
	s.mu.Unlock()
}
