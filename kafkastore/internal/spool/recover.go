package spool

import (
	"bytes"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

const (
	cursorFile    = "cursor"
	cursorTmpFile = "cursor.tmp"
	quarantineDir = "quarantine"
	scanChunk     = 1 << 20
)

var zeroChunk = make([]byte, scanChunk)

// scanner reads a segment file in chunks: recovery holds at most two
// chunks, however large the backlog.
type scanner struct {
	s    *Spool
	g    *segment
	crc  []byte // payload chunks for the checksum
	srch []byte // the search for the next magic
}

type frameState int

const (
	frameBad   frameState = iota // no frame here
	frameStale                   // a valid frame whose seq does not increase
	frameOK
)

// frameAt checks the frame at off: magic, a length that fits the file,
// the CRC, and a seq above last.
func (sc *scanner) frameAt(off int64, last uint64) (header, frameState) {
	var b [headerSize]byte
	if off+headerSize > sc.g.size {
		return header{}, frameBad
	}
	if _, err := sc.g.f.ReadAt(b[:], off); err != nil {
		return header{}, frameBad
	}
	h, ok := parseHeader(b[:])
	if !ok || off+h.frameLen() > sc.g.size {
		return header{}, frameBad
	}
	crc := headerCRC(b[:])
	for p, n := off+headerSize, int64(h.length); n > 0; {
		c := sc.crc[:min(n, scanChunk)]
		if _, err := sc.g.f.ReadAt(c, p); err != nil {
			return header{}, frameBad
		}
		crc = crc32.Update(crc, castagnoli, c)
		p += int64(len(c))
		n -= int64(len(c))
	}
	switch {
	case crc != h.crc:
		return header{}, frameBad
	case h.seq <= last || h.seq < sc.g.first:
		return h, frameStale
	}
	return h, frameOK
}

// nextFrame searches [from, size) for the next checksummed frame (not at
// skip) and reports whether any byte there is not zero.
func (sc *scanner) nextFrame(from, skip int64, last uint64) (at int64, h header, st frameState, nonzero bool) {
	for off := from; off < sc.g.size; {
		c := sc.srch[:min(sc.g.size-off, scanChunk)]
		n, err := sc.g.f.ReadAt(c, off)
		c = c[:n]
		if n == 0 && err != nil {
			return -1, header{}, frameBad, true // unreadable: treat as damage
		}
		if !bytes.Equal(c, zeroChunk[:len(c)]) {
			nonzero = true
		}
		for i := 0; ; {
			j := bytes.Index(c[i:], magicBytes)
			if j < 0 {
				break
			}
			if off+int64(i+j) == skip {
				i += j + 1
				continue
			}
			if h, st := sc.frameAt(off+int64(i+j), last); st != frameBad {
				return off + int64(i+j), h, st, true
			}
			i += j + 1
		}
		if int64(n) < sc.g.size-off && n > len(magicBytes) {
			n -= len(magicBytes) - 1 // a magic across the chunk boundary
		}
		off += int64(n)
	}
	return -1, header{}, frameBad, nonzero
}

// recover loads the cursor and the segments: deletes those the cursor
// passed, scans the others, cuts torn tails, quarantines segments damaged
// in the middle, and sets the read position at the first unacknowledged
// record. Only an unreadable or unwritable directory fails it.
func (s *Spool) recover() error {
	hint := func(op, path string, err error) error {
		return fmt.Errorf("spool: %s %s (check that the directory is readable and writable, and its file system): %w", op, path, err)
	}
	names, err := s.fs.ReadDir(s.dir)
	if err != nil {
		return hint("read directory", s.dir, err)
	}
	var firsts []uint64
	for _, name := range names {
		switch {
		case name == cursorTmpFile:
			_ = s.fs.Remove(filepath.Join(s.dir, name))
		case strings.HasSuffix(name, ".seg") && len(name) == 24:
			if n, err := strconv.ParseUint(strings.TrimSuffix(name, ".seg"), 10, 64); err == nil && n > 0 {
				firsts = append(firsts, n)
			}
		}
	}
	slices.Sort(firsts)
	cursor := s.readCursor(slices.Contains(names, cursorFile))
	s.durable = max(cursor, 1)
	s.acked = s.durable - 1
	s.lastDurable = s.acked

	// Every seq of a segment is below its successor's name.
	dirty := false
	for len(firsts) > 1 && firsts[1] <= s.durable {
		if err := s.fs.Remove(filepath.Join(s.dir, segmentName(firsts[0]))); err != nil && !os.IsNotExist(err) {
			return hint("remove delivered segment", segmentName(firsts[0]), err)
		}
		firsts = firsts[1:]
		dirty = true
	}

	last := uint64(0) // the seq every frame must exceed
	sc := &scanner{s: s, crc: make([]byte, scanChunk), srch: make([]byte, scanChunk)}
	for i, first := range firsts {
		g := &segment{first: first, path: filepath.Join(s.dir, segmentName(first))}
		f, err := s.fs.OpenFile(g.path, os.O_RDWR, 0)
		if err != nil {
			return hint("open segment", g.path, err)
		}
		g.f = f
		if g.size, err = f.Size(); err != nil {
			_ = f.Close()
			return hint("stat segment", g.path, err)
		}
		sc.g = g
		last = s.scan(sc, last, i == len(firsts)-1)
		if len(g.extents) == 0 {
			// Nothing durable in it (a crash right after its creation, or
			// a group that failed): drop it; the writer creates afresh.
			_ = f.Close()
			if err := s.fs.Remove(g.path); err != nil && !os.IsNotExist(err) {
				return hint("remove empty segment", g.path, err)
			}
			dirty = true
			continue
		}
		s.segs = append(s.segs, g)
	}
	if dirty {
		if err := s.fs.SyncDir(s.dir); err != nil {
			return hint("sync directory", s.dir, err)
		}
	}
	last = max(last, s.acked)
	s.lastDurable = last
	s.nextSeq = last + 1
	if n := len(s.segs); n > 0 {
		g := s.segs[n-1]
		g.written = g.end()
		if !g.retired {
			s.active = g
		}
		if s.rseg == nil {
			s.rseg, s.roff = g, g.end()
		}
	}
	s.st.Replayed = uint64(s.st.Records)
	if s.st.Records > 0 || s.st.TornTails > 0 || s.st.CorruptFrames > 0 {
		s.log.Info("spool: recovered", "dir", s.dir, "records", s.st.Records, "bytes", s.st.Bytes,
			"segments", len(s.segs), "torn_tails", s.st.TornTails, "corrupt_frames", s.st.CorruptFrames)
	}
	return nil
}

// readCursor returns the next unacknowledged seq from the cursor file, 0
// when there is none. A damaged cursor replays everything (duplicates,
// never loss).
func (s *Spool) readCursor(exists bool) uint64 {
	if !exists {
		return 0
	}
	path := filepath.Join(s.dir, cursorFile)
	f, err := s.fs.OpenFile(path, os.O_RDONLY, 0)
	if err != nil {
		s.log.Warn("spool: cursor unreadable; replaying every segment", "path", path, "err", err)
		return 0
	}
	defer f.Close()
	b := make([]byte, cursorSize+1)
	n, _ := f.ReadAt(b, 0)
	next, ok := decodeCursor(b[:n])
	if !ok {
		s.log.Warn("spool: cursor damaged; replaying every segment", "path", path)
		return 0
	}
	return next
}

// scan walks sc.g's frames after last (the previous segment's last seq),
// records its extents, and counts and repairs damage. It returns the
// last seq found.
func (s *Spool) scan(sc *scanner, last uint64, isLast bool) uint64 {
	g := sc.g
	last = max(last, g.first-1)
	quarantined := false
	start, off := int64(0), int64(0)
	for {
		h, st := sc.frameAt(off, last)
		if st == frameOK {
			if h.seq >= s.durable {
				if s.rseg == nil {
					s.rseg, s.roff = g, off
				}
				s.st.Records++
				s.st.Bytes += h.frameLen()
			}
			last = h.seq
			off += h.frameLen()
			continue
		}
		if off > start {
			g.extents = append(g.extents, extent{start, off})
		}
		skip := off // the bad frame itself
		if st == frameStale {
			skip = -1 // a stale frame ends the segment: cut from it
		}
		at, nh, nst, nonzero := sc.nextFrame(off, skip, last)
		if st != frameStale && nst == frameOK {
			// Valid frames follow: keep them, count what lies between.
			lost := uint64(1)
			if nh.seq-last > 1 {
				lost = nh.seq - last - 1
			}
			s.st.CorruptFrames += lost
			if !quarantined {
				quarantined = true
				s.quarantine(g)
			}
			s.log.Warn("spool: damaged frames inside a segment; the valid frames after them are kept",
				"segment", g.path, "offset", off, "resumes_at", at, "lost_frames", lost)
			start, off = at, at
			continue
		}
		if nonzero || st == frameStale {
			s.st.TornTails++
			s.log.Warn("spool: cutting a torn tail", "segment", g.path, "offset", off)
			s.cut(g, off, isLast)
		}
		break
	}
	g.lastSeq = last
	if len(g.extents) == 0 {
		g.lastSeq = g.first - 1
	}
	return last
}

// cut truncates g at off and preallocates it again, so that the stale
// bytes cannot reappear behind later frames. If that fails, g is retired.
func (s *Spool) cut(g *segment, off int64, isLast bool) {
	size := max(g.size, s.o.SegmentBytes)
	if !isLast {
		size = g.size
	}
	err := g.f.Truncate(off)
	if err == nil {
		err = g.f.Allocate(size)
	}
	if err == nil {
		err = g.f.Sync()
	}
	if err != nil {
		s.log.Warn("spool: could not cut a torn tail; the segment is no longer appended to", "segment", g.path, "err", err)
		g.retired = true
		return
	}
	g.size = size
}

// quarantine copies g as found to dir/quarantine/<name>.<unix> for a
// post-mortem. Failing to copy is logged, never fatal.
func (s *Spool) quarantine(g *segment) {
	qdir := filepath.Join(s.dir, quarantineDir)
	path := filepath.Join(qdir, fmt.Sprintf("%s.%d", filepath.Base(g.path), time.Now().Unix()))
	err := s.copyFile(g, qdir, path)
	if err != nil {
		s.log.Warn("spool: could not quarantine a damaged segment", "segment", g.path, "path", path, "err", err)
		return
	}
	s.st.Quarantined++
	s.log.Warn("spool: damaged segment copied to quarantine", "segment", g.path, "path", path)
}

func (s *Spool) copyFile(g *segment, qdir, path string) error {
	if err := s.fs.MkdirAll(qdir); err != nil {
		return err
	}
	f, err := s.fs.OpenFile(path, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	buf := make([]byte, scanChunk)
	for off := int64(0); off < g.size; {
		n, rerr := g.f.ReadAt(buf[:min(g.size-off, scanChunk)], off)
		if n > 0 {
			if _, err := f.WriteAt(buf[:n], off); err != nil {
				_ = f.Close()
				return err
			}
		}
		if rerr != nil && n == 0 {
			break
		}
		off += int64(n)
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = s.fs.SyncDir(qdir)
	}
	if err == nil {
		err = s.fs.SyncDir(s.dir)
	}
	return err
}
