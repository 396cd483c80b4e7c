package spool

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"syscall"
	"time"
)

// DefaultMaxBytes is the bound when Options.MaxBytes is 0.
const DefaultMaxBytes = 1 << 30

const (
	maxDefaultSegment     = 64 << 20
	minSegmentBytes       = 4 << 10
	defaultCursorInterval = 100 * time.Millisecond
	// groupBytes bounds what one write and one fdatasync carry: large
	// enough to carry every caller queued behind a sync, small enough
	// that the first of them does not wait on a long write.
	groupBytes = 4 << 20
)

// Options configure a Spool. The zero value is usable.
type Options struct {
	// MaxBytes bounds the live segments (see Append); 0 means
	// DefaultMaxBytes. It must be at least twice SegmentBytes.
	MaxBytes int64
	// SegmentBytes is the preallocated size of a segment; 0 means
	// min(64 MiB, MaxBytes/4). A larger payload gets a segment of its own.
	SegmentBytes int64
	// CursorInterval is how often acknowledgements are made durable (and
	// delivered segments deleted); 0 means 100ms.
	CursorInterval time.Duration
	// Logger receives recovery damage and write failures; nil discards.
	Logger *slog.Logger
	// ObserveSync, if set, is called with the duration of every group's
	// fdatasync.
	ObserveSync func(time.Duration)

	fs fileSystem // tests only: the crash-point layer
}

var (
	// ErrFull: Append waited for room in the spool until its context
	// ended. Nothing was written; the spool frees room as acknowledged
	// segments are deleted.
	ErrFull = errors.New("spool: full (records are not being acknowledged fast enough; raise MaxBytes or check the publisher)")
	// ErrLocked: another Spool, in this process or another, owns the
	// directory.
	ErrLocked = errors.New("spool: directory locked by another owner")
	// ErrClosed: the Spool is closed.
	ErrClosed = errors.New("spool: closed")
	// ErrTooLarge: the payload can never fit (its frame exceeds half of
	// MaxBytes).
	ErrTooLarge = errors.New("spool: payload too large")
)

// WriteError says a group of frames could not be made durable:
// preallocating its segment, writing it or syncing it failed. None of the
// group's Appends returned nil, yet after a crash such a record may still
// be found and delivered (its bytes may have reached the disk).
type WriteError struct {
	Op   string // "create", "preallocate", "write", "fdatasync", "sync dir"
	Path string
	Err  error // the OS error
}

func (e *WriteError) Error() string {
	hint := ""
	if e.DiskFull() {
		hint = " (the disk is full: free space; the next Append tries again)"
	}
	return fmt.Sprintf("spool: %s %s: %v%s", e.Op, e.Path, e.Err, hint)
}

func (e *WriteError) Unwrap() error { return e.Err }

// DiskFull reports whether the file system ran out of space or quota.
func (e *WriteError) DiskFull() bool {
	return errors.Is(e.Err, syscall.ENOSPC) || errors.Is(e.Err, syscall.EDQUOT) ||
		errors.Is(e.Err, syscall.EFBIG)
}

// Record is one appended payload.
type Record struct {
	Seq      uint64
	Appended time.Time
	Payload  []byte
}

// Stats is a snapshot of a Spool.
type Stats struct {
	Records int64 // unacknowledged records
	Bytes   int64 // their frame bytes
	// DiskBytes is the size on disk of the live segment files,
	// preallocation included.
	DiskBytes int64
	Segments  int
	// Oldest is the append time of the oldest unacknowledged record; zero
	// when there is none.
	Oldest          time.Time
	Appended, Acked uint64 // since Open
	Replayed        uint64 // unacknowledged records found at Open
	// Recovery damage: torn tails cut, frames lost inside a segment,
	// segments copied to dir/quarantine.
	TornTails, CorruptFrames, Quarantined uint64
	// FullWaits counts Appends that waited for room, FullRejections those
	// that gave up with ErrFull.
	FullWaits, FullRejections uint64
	WriteErrors               uint64
	// DiskError is the last WriteError; nil once a later group succeeded.
	DiskError error
}

// extent is a run of valid frames [start, end) in a segment file.
type extent struct{ start, end int64 }

type segment struct {
	first    uint64 // the name: every seq in the file is >= first
	path     string
	f        file
	size     int64    // allocated size of the file
	extents  []extent // durable frames; more than one after mid-file damage
	lastSeq  uint64   // last durable seq, first-1 when none
	written  int64    // end of the frames written, synced or not
	unsynced int      // groups written and not yet synced (or failed): the reader stays until 0
	retired  bool     // a write or sync failed: never written again
	err      error    // the failed sync: never synced again
}

func (g *segment) end() int64 {
	if len(g.extents) == 0 {
		return 0
	}
	return g.extents[len(g.extents)-1].end
}

func segmentName(first uint64) string { return fmt.Sprintf("%020d.seg", first) }

type appendReq struct {
	payload []byte
	frame   int64
	done    chan error
}

type inflight struct {
	seq      uint64
	appended int64
	frame    int64
}

// Spool is a durable local queue of records. Append, Read, Ack and Stats
// may be called concurrently; Reads are served one at a time, in order.
type Spool struct {
	dir    string
	o      Options
	fs     fileSystem
	log    *slog.Logger
	unlock func()

	maxFrame int64
	buf      []byte // the writer's group buffer

	readMu sync.Mutex // one Read at a time

	mu       sync.Mutex
	closed   bool
	closedCh chan struct{}
	kick     chan struct{} // wakes the writer
	roomCh   chan struct{} // closed when room is freed
	dataCh   chan struct{} // closed when records become durable
	flushCh  chan chan struct{}

	queue   []*appendReq
	pending int64 // frame bytes queued or being written
	flights []flight
	// syncKick wakes the syncer; writerExited tells it no flight follows.
	syncKick     chan struct{}
	writerExited bool

	segs    []*segment
	active  *segment // the segment appended to; nil after a failure
	nextSeq uint64

	rseg  *segment // read position
	roff  int64
	rwin  []inflight // read, not yet acknowledged
	acked uint64     // highest acknowledged seq
	// lastDurable is the highest seq made durable.
	lastDurable uint64
	// durable is the next-unacked seq in the cursor file.
	durable uint64

	st Stats

	writerDone chan struct{}
	cursorDone chan struct{}
	closeErr   error
}

// Open creates dir if needed, takes its lock, recovers the segments found
// there (cutting torn tails and quarantining damaged segments, never
// failing for damage) and starts the writer and the cursor goroutines.
func Open(dir string, o Options) (*Spool, error) {
	if o.MaxBytes == 0 {
		o.MaxBytes = DefaultMaxBytes
	}
	if o.SegmentBytes == 0 {
		o.SegmentBytes = min(maxDefaultSegment, o.MaxBytes/4)
	}
	switch {
	case o.MaxBytes < 0 || o.SegmentBytes < 0 || o.CursorInterval < 0:
		return nil, fmt.Errorf("spool: negative option (MaxBytes %d, SegmentBytes %d, CursorInterval %v)", o.MaxBytes, o.SegmentBytes, o.CursorInterval)
	case o.SegmentBytes < minSegmentBytes:
		return nil, fmt.Errorf("spool: SegmentBytes %d is below the minimum %d (raise MaxBytes or SegmentBytes)", o.SegmentBytes, minSegmentBytes)
	case o.MaxBytes < 2*o.SegmentBytes:
		return nil, fmt.Errorf("spool: MaxBytes %d must be at least twice SegmentBytes %d: a spool needs room for a segment being deleted and one being filled", o.MaxBytes, o.SegmentBytes)
	}
	if o.CursorInterval == 0 {
		o.CursorInterval = defaultCursorInterval
	}
	s := &Spool{
		dir:        dir,
		o:          o,
		fs:         o.fs,
		log:        o.Logger,
		maxFrame:   min(o.MaxBytes/2, headerSize+(1<<32-1)),
		closedCh:   make(chan struct{}),
		kick:       make(chan struct{}, 1),
		syncKick:   make(chan struct{}, 1),
		roomCh:     make(chan struct{}),
		dataCh:     make(chan struct{}),
		flushCh:    make(chan chan struct{}),
		writerDone: make(chan struct{}),
		cursorDone: make(chan struct{}),
	}
	if s.fs == nil {
		s.fs = osFS{}
	}
	if s.log == nil {
		s.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("spool: create directory (check its path and permissions): %w", err)
	}
	unlock, err := lockDir(dir)
	if err != nil {
		return nil, err
	}
	s.unlock = unlock
	if err := s.recover(); err != nil {
		s.closeFiles()
		unlock()
		return nil, err
	}
	go s.writer()
	go s.syncer()
	go s.cursorLoop()
	return s, nil
}

// Append writes payload as the next record and returns nil once it is
// durable (written and fdatasynced with the group it joined). Concurrent
// Appends share one write and one sync.
//
// When the frame would take the live segments over MaxBytes, Append waits
// for room until ctx ends and then returns an error matching ErrFull;
// nothing is ever dropped to make room. Once the record is queued, Append
// waits for its group's sync even if ctx ends (the writer still holds the
// payload). A *WriteError says the group failed; ErrClosed and
// ErrTooLarge say what they name.
func (s *Spool) Append(ctx context.Context, payload []byte) error {
	frame := headerSize + int64(len(payload))
	if frame > s.maxFrame {
		return fmt.Errorf("%w: %d bytes with its header; the limit is %d (half of MaxBytes)", ErrTooLarge, frame, s.maxFrame)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	r := &appendReq{payload: payload, frame: frame, done: make(chan error, 1)}
	s.mu.Lock()
	waited := false
	for {
		if s.closed {
			s.mu.Unlock()
			return ErrClosed
		}
		if s.usedLocked()+frame <= s.o.MaxBytes {
			break
		}
		if !waited {
			waited = true
			s.st.FullWaits++
		}
		room := s.roomCh
		s.mu.Unlock()
		select {
		case <-room:
		case <-s.closedCh:
		case <-ctx.Done():
			s.mu.Lock()
			s.st.FullRejections++
			used := s.usedLocked()
			s.mu.Unlock()
			return fmt.Errorf("%w: %d of %d bytes in use: %w", ErrFull, used, s.o.MaxBytes, ctx.Err())
		}
		s.mu.Lock()
	}
	s.pending += frame
	s.queue = append(s.queue, r)
	s.mu.Unlock()
	select {
	case s.kick <- struct{}{}:
	default:
	}
	return <-r.done
}

// usedLocked is what counts against MaxBytes: every segment but the active
// one whole (a retired segment's or a full one's unused tail included,
// which keeps the disk within MaxBytes and one segment), the active one's
// frames, and the frames queued.
func (s *Spool) usedLocked() int64 {
	used := s.pending
	for _, g := range s.segs {
		if g == s.active {
			used += g.written
		} else {
			used += g.size
		}
	}
	return used
}

// writer turns queued Appends into groups: it encodes each group and
// writes it with one pwrite, then hands it to the syncer and goes on with
// the next while the syncer's fdatasync runs.
func (s *Spool) writer() {
	defer func() {
		s.mu.Lock()
		s.writerExited = true
		s.mu.Unlock()
		s.kickSyncer()
	}()
	for {
		s.mu.Lock()
		for len(s.queue) == 0 {
			if s.closed {
				s.mu.Unlock()
				return
			}
			s.mu.Unlock()
			select {
			case <-s.kick:
			case <-s.closedCh:
			}
			s.mu.Lock()
		}
		g := s.active
		head := s.queue[0].frame
		if g == nil || head > g.size-g.written {
			name := s.nextSeq
			s.mu.Unlock()
			if err := s.roll(name, head); err != nil {
				s.mu.Lock()
				batch := s.takeLocked(groupBytes)
				s.mu.Unlock()
				s.fail(batch, err, false)
			}
			continue
		}
		batch := s.takeLocked(min(groupBytes, g.size-g.written))
		first := s.nextSeq
		s.nextSeq += uint64(len(batch))
		off := g.written
		s.mu.Unlock()

		n, err := s.writeGroup(g, off, first, batch)
		if err != nil {
			s.retire(g, err)
			s.fail(batch, err, false)
			continue
		}
		s.mu.Lock()
		g.written = off + n
		g.unsynced++
		s.pending -= n
		s.flights = append(s.flights, flight{g: g, off: off, n: n, first: first, batch: batch})
		s.mu.Unlock()
		s.kickSyncer()
	}
}

func (s *Spool) kickSyncer() {
	select {
	case s.syncKick <- struct{}{}:
	default:
	}
}

// flight is a group written and not yet synced.
type flight struct {
	g      *segment
	off, n int64
	first  uint64
	batch  []*appendReq
}

// syncer makes the written groups durable: one fdatasync covers every
// group written before it started. Only then are their Appends answered.
func (s *Spool) syncer() {
	defer close(s.writerDone)
	for {
		s.mu.Lock()
		for len(s.flights) == 0 {
			if s.writerExited {
				s.mu.Unlock()
				return
			}
			s.mu.Unlock()
			<-s.syncKick
			s.mu.Lock()
		}
		fl := s.flights
		s.flights = nil
		s.mu.Unlock()
		for len(fl) > 0 {
			g := fl[0].g
			n := 1
			for n < len(fl) && fl[n].g == g {
				n++
			}
			s.syncFlights(g, fl[:n])
			fl = fl[n:]
		}
	}
}

func (s *Spool) syncFlights(g *segment, fl []flight) {
	s.mu.Lock()
	err := g.err // a sync of g failed before: never sync it again
	s.mu.Unlock()
	if err == nil {
		start := time.Now()
		err = g.f.Sync()
		if s.o.ObserveSync != nil {
			s.o.ObserveSync(time.Since(start))
		}
		if err != nil {
			err = &WriteError{Op: "fdatasync", Path: g.path, Err: unwrapPath(err)}
			s.retire(g, err)
		}
	}
	if err != nil {
		var batch []*appendReq
		for _, f := range fl {
			batch = append(batch, f.batch...)
		}
		s.mu.Lock()
		g.unsynced -= len(fl)
		close(s.dataCh) // a reader waiting on g may move on now
		s.dataCh = make(chan struct{})
		s.mu.Unlock()
		s.fail(batch, err, true)
		return
	}
	s.mu.Lock()
	g.unsynced -= len(fl)
	records := 0
	for _, f := range fl {
		if len(g.extents) > 0 && g.extents[len(g.extents)-1].end == f.off {
			g.extents[len(g.extents)-1].end = f.off + f.n
		} else {
			g.extents = append(g.extents, extent{f.off, f.off + f.n})
		}
		g.lastSeq = f.first + uint64(len(f.batch)) - 1
		records += len(f.batch)
		s.st.Bytes += f.n
	}
	s.lastDurable = g.lastSeq
	s.st.Appended += uint64(records)
	s.st.Records += int64(records)
	s.st.DiskError = nil
	if s.rseg == nil {
		s.rseg, s.roff = g, fl[0].off
	}
	close(s.dataCh)
	s.dataCh = make(chan struct{})
	s.mu.Unlock()
	for _, f := range fl {
		for _, r := range f.batch {
			r.done <- nil
		}
	}
	if records > 1 {
		// Let the callers just answered append again, and the writer
		// write them, before the next sync: with few CPUs they would
		// otherwise straggle into the sync after it, halving every group.
		runtime.Gosched()
	}
}

// retire stops appending to g after a failed write or sync: the writer
// moves to a new segment and the syncer never syncs g again.
func (s *Spool) retire(g *segment, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if g.err == nil {
		g.err = err
	}
	g.retired = true
	if s.active == g {
		s.active = nil
	}
	s.log.Error("spool: a group could not be made durable; its Appends failed and the segment is retired", "segment", g.path, "err", err)
}

// takeLocked removes from the queue the requests whose frames fit in limit
// (at least one).
func (s *Spool) takeLocked(limit int64) []*appendReq {
	n, sum := 0, int64(0)
	for n < len(s.queue) && (n == 0 || sum+s.queue[n].frame <= limit) {
		sum += s.queue[n].frame
		n++
	}
	batch := make([]*appendReq, n)
	copy(batch, s.queue)
	clear(s.queue[:n])
	s.queue = s.queue[n:]
	if len(s.queue) == 0 {
		s.queue = nil
	}
	return batch
}

// fail answers batch with err; written says whether its bytes moved from
// pending into a segment already.
func (s *Spool) fail(batch []*appendReq, err error, written bool) {
	s.mu.Lock()
	for _, r := range batch {
		if !written {
			s.pending -= r.frame
		}
	}
	s.st.WriteErrors++
	s.st.DiskError = err
	close(s.roomCh)
	s.roomCh = make(chan struct{})
	s.mu.Unlock()
	for _, r := range batch {
		r.done <- err
	}
}

// writeGroup encodes the batch's frames and writes them at off with one
// write.
func (s *Spool) writeGroup(g *segment, off int64, first uint64, batch []*appendReq) (int64, error) {
	var n int64
	for _, r := range batch {
		n += r.frame
	}
	if int64(cap(s.buf)) < n {
		s.buf = make([]byte, n)
	}
	b := s.buf[:n]
	now := time.Now().UnixNano()
	p := int64(0)
	for i, r := range batch {
		putFrame(b[p:], first+uint64(i), now, r.payload)
		p += r.frame
	}
	if cap(s.buf) > 2*groupBytes {
		s.buf = nil // a lone oversized frame: do not keep its buffer
	}
	if _, err := g.f.WriteAt(b, off); err != nil {
		return 0, &WriteError{Op: "write", Path: g.path, Err: unwrapPath(err)}
	}
	return n, nil
}

// roll creates and preallocates the segment named first, sized for a
// frame of frame bytes, and makes it the active one. On failure nothing
// is left behind but an empty file the next attempt truncates.
func (s *Spool) roll(first uint64, frame int64) error {
	g := &segment{
		first:   first,
		path:    filepath.Join(s.dir, segmentName(first)),
		size:    max(s.o.SegmentBytes, frame),
		lastSeq: first - 1,
	}
	f, err := s.fs.OpenFile(g.path, os.O_CREATE|os.O_TRUNC|os.O_RDWR, 0o644)
	if err != nil {
		return &WriteError{Op: "create", Path: g.path, Err: unwrapPath(err)}
	}
	fail := func(op string, err error) error {
		_ = f.Close()
		if rerr := s.fs.Remove(g.path); rerr == nil {
			_ = s.fs.SyncDir(s.dir)
		}
		return &WriteError{Op: op, Path: g.path, Err: unwrapPath(err)}
	}
	if err := f.Allocate(g.size); err != nil {
		return fail("preallocate", err)
	}
	if err := f.Sync(); err != nil {
		return fail("fdatasync", err)
	}
	if err := s.fs.SyncDir(s.dir); err != nil {
		return fail("sync dir", err)
	}
	g.f = f
	s.mu.Lock()
	s.segs = append(s.segs, g)
	s.active = g
	s.mu.Unlock()
	return nil
}

func unwrapPath(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// Stats returns a snapshot.
func (s *Spool) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.st
	st.Segments = len(s.segs)
	for _, g := range s.segs {
		st.DiskBytes += g.size
	}
	if len(s.rwin) > 0 {
		st.Oldest = time.Unix(0, s.rwin[0].appended)
	} else if st.Records > 0 && !s.closed {
		// The oldest is the next to read: its header tells its time.
		var b [headerSize]byte
		if g, off, _, ok := s.readableLocked(); ok {
			if _, err := g.f.ReadAt(b[:], off); err == nil {
				if h, ok := parseHeader(b[:]); ok {
					st.Oldest = time.Unix(0, h.appended)
				}
			}
		}
	}
	return st
}

// Close stops accepting Appends (they return ErrClosed), answers the
// queued ones, makes the acknowledgements durable, closes the files and
// releases the directory. Close is idempotent.
func (s *Spool) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return s.closeErr
	}
	s.closed = true
	close(s.closedCh)
	s.mu.Unlock()
	<-s.writerDone
	<-s.cursorDone
	s.readMu.Lock() // a Read in progress has seen closedCh
	defer s.readMu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closeErr = s.closeFiles()
	s.unlock()
	return s.closeErr
}

func (s *Spool) closeFiles() error {
	var first error
	for _, g := range s.segs {
		if g.f == nil {
			continue
		}
		if err := g.f.Close(); err != nil && first == nil {
			first = fmt.Errorf("spool: close %s: %w", g.path, err)
		}
		g.f = nil
	}
	return first
}
