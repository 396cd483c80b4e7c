package spool

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
)

// crashFS is the only layer a test puts between the spool and the file
// system: an in-memory directory tree that remembers what was synced. Its
// durable view is what a machine that lost power would find: file data as
// of the last Sync, and directory entries as of the last SyncDir. It can
// crash after its k-th mutating operation (every later one fails) and can
// inject a failure into any operation.
type crashFS struct {
	mu      sync.Mutex
	names   map[string]*inode // current directory entries, by full path
	durable map[string]*inode // entries as of their directory's last sync
	ops     int
	crashAt int // crash after this many mutating operations; 0: never
	crashed bool
	nextID  int
	trace   []string
	// fault, if set, is asked before every mutating operation; an error
	// it returns is that operation's.
	fault func(op string, ino *inode) error
}

type inode struct {
	id     int
	path   string // the name it was created under
	data   []byte
	synced []byte
	syncs  int // Sync calls reaching it
	writes int // WriteAt calls reaching it
}

var errCrashed = errors.New("crashfs: the machine crashed")

func newCrashFS() *crashFS {
	return &crashFS{names: map[string]*inode{}, durable: map[string]*inode{}}
}

// mutate counts a mutating operation; it fails once the machine crashed.
func (c *crashFS) mutate(op, path string, ino *inode) error {
	if c.crashed {
		return errCrashed
	}
	if c.fault != nil {
		if err := c.fault(op, ino); err != nil {
			return err
		}
	}
	c.ops++
	c.trace = append(c.trace, op+" "+filepath.Base(path))
	if c.crashAt > 0 && c.ops >= c.crashAt {
		c.crashed = true
	}
	return nil
}

func (c *crashFS) OpenFile(name string, flag int, _ os.FileMode) (file, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	ino, ok := c.names[name]
	if !ok {
		if flag&os.O_CREATE == 0 {
			return nil, &os.PathError{Op: "open", Path: name, Err: syscall.ENOENT}
		}
		if err := c.mutate("create", name, nil); err != nil {
			return nil, &os.PathError{Op: "open", Path: name, Err: err}
		}
		c.nextID++
		ino = &inode{id: c.nextID, path: name}
		c.names[name] = ino
	} else if flag&os.O_TRUNC != 0 && len(ino.data) > 0 {
		if err := c.mutate("truncate", name, ino); err != nil {
			return nil, &os.PathError{Op: "open", Path: name, Err: err}
		}
		ino.data = ino.data[:0]
	}
	return &memFile{c: c, ino: ino, name: name}, nil
}

func (c *crashFS) ReadDir(dir string) ([]string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var names []string
	for p := range c.names {
		if filepath.Dir(p) == filepath.Clean(dir) {
			names = append(names, filepath.Base(p))
		}
	}
	slices.Sort(names)
	return names, nil
}

func (c *crashFS) MkdirAll(string) error { return nil }

func (c *crashFS) Rename(oldpath, newpath string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	ino, ok := c.names[oldpath]
	if !ok {
		return &os.LinkError{Op: "rename", Old: oldpath, New: newpath, Err: syscall.ENOENT}
	}
	if err := c.mutate("rename", newpath, ino); err != nil {
		return &os.LinkError{Op: "rename", Old: oldpath, New: newpath, Err: err}
	}
	delete(c.names, oldpath)
	c.names[newpath] = ino
	return nil
}

func (c *crashFS) Remove(name string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	ino, ok := c.names[name]
	if !ok {
		return &os.PathError{Op: "remove", Path: name, Err: syscall.ENOENT}
	}
	if err := c.mutate("remove", name, ino); err != nil {
		return &os.PathError{Op: "remove", Path: name, Err: err}
	}
	delete(c.names, name)
	return nil
}

func (c *crashFS) SyncDir(dir string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.mutate("syncdir", dir, nil); err != nil {
		return err
	}
	dir = filepath.Clean(dir)
	for p := range c.durable {
		if filepath.Dir(p) == dir {
			delete(c.durable, p)
		}
	}
	for p, ino := range c.names {
		if filepath.Dir(p) == dir {
			c.durable[p] = ino
		}
	}
	return nil
}

// materialize writes the durable view into dir: what a restart after the
// crash finds.
func (c *crashFS) materialize(from, dir string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	for p, ino := range c.durable {
		rel, err := filepath.Rel(from, p)
		if err != nil {
			return err
		}
		dst := filepath.Join(dir, rel)
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(dst, ino.synced, 0o644); err != nil {
			return err
		}
	}
	return nil
}

type memFile struct {
	c      *crashFS
	ino    *inode
	name   string
	closed bool
}

func (f *memFile) ReadAt(p []byte, off int64) (int, error) {
	f.c.mu.Lock()
	defer f.c.mu.Unlock()
	if off >= int64(len(f.ino.data)) {
		return 0, io.EOF
	}
	n := copy(p, f.ino.data[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func (f *memFile) WriteAt(p []byte, off int64) (int, error) {
	f.c.mu.Lock()
	defer f.c.mu.Unlock()
	f.ino.writes++
	if err := f.c.mutate("write", f.name, f.ino); err != nil {
		return 0, &os.PathError{Op: "write", Path: f.name, Err: err}
	}
	if end := off + int64(len(p)); end > int64(len(f.ino.data)) {
		f.ino.data = append(f.ino.data, make([]byte, end-int64(len(f.ino.data)))...)
	}
	copy(f.ino.data[off:], p)
	return len(p), nil
}

func (f *memFile) Sync() error {
	f.c.mu.Lock()
	defer f.c.mu.Unlock()
	f.ino.syncs++
	if err := f.c.mutate("sync", f.name, f.ino); err != nil {
		return &os.PathError{Op: "fdatasync", Path: f.name, Err: err}
	}
	f.ino.synced = slices.Clone(f.ino.data)
	return nil
}

func (f *memFile) Truncate(size int64) error {
	f.c.mu.Lock()
	defer f.c.mu.Unlock()
	if err := f.c.mutate("truncate", f.name, f.ino); err != nil {
		return &os.PathError{Op: "truncate", Path: f.name, Err: err}
	}
	if size < int64(len(f.ino.data)) {
		f.ino.data = f.ino.data[:size]
	} else {
		f.ino.data = append(f.ino.data, make([]byte, size-int64(len(f.ino.data)))...)
	}
	return nil
}

func (f *memFile) Allocate(size int64) error {
	f.c.mu.Lock()
	defer f.c.mu.Unlock()
	if err := f.c.mutate("allocate", f.name, f.ino); err != nil {
		return &os.PathError{Op: "fallocate", Path: f.name, Err: err}
	}
	if size > int64(len(f.ino.data)) {
		f.ino.data = append(f.ino.data, make([]byte, size-int64(len(f.ino.data)))...)
	}
	return nil
}

func (f *memFile) Size() (int64, error) {
	f.c.mu.Lock()
	defer f.c.mu.Unlock()
	return int64(len(f.ino.data)), nil
}

func (f *memFile) Close() error {
	f.c.mu.Lock()
	defer f.c.mu.Unlock()
	if f.closed {
		return fmt.Errorf("crashfs: %s closed twice", f.name)
	}
	f.closed = true
	return nil
}
