package spool

import (
	"io"
	"os"
	"path/filepath"
)

// fileSystem is every file operation the spool makes after it holds the
// lock. The crash-point test replaces it to throw away what was not synced;
// everything else runs on osFS.
type fileSystem interface {
	OpenFile(name string, flag int, perm os.FileMode) (file, error)
	ReadDir(dir string) ([]string, error)
	MkdirAll(dir string) error
	Rename(oldpath, newpath string) error
	Remove(name string) error
	SyncDir(dir string) error
}

type file interface {
	io.ReaderAt
	io.WriterAt
	io.Closer
	// Sync makes the written data (and the size, if it changed) durable:
	// fdatasync where there is one.
	Sync() error
	Truncate(size int64) error
	// Allocate reserves blocks up to size, so that later writes below it
	// neither fail for space nor change the size.
	Allocate(size int64) error
	Size() (int64, error)
}

type osFS struct{}

func (osFS) OpenFile(name string, flag int, perm os.FileMode) (file, error) {
	f, err := os.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return osFile{f}, nil
}

func (osFS) ReadDir(dir string) ([]string, error) {
	es, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, len(es))
	for _, e := range es {
		names = append(names, e.Name())
	}
	return names, nil
}

func (osFS) MkdirAll(dir string) error { return os.MkdirAll(dir, 0o755) }

func (osFS) Rename(oldpath, newpath string) error { return os.Rename(oldpath, newpath) }

func (osFS) Remove(name string) error { return os.Remove(name) }

func (osFS) SyncDir(dir string) error { return syncDir(filepath.Clean(dir)) }

type osFile struct{ *os.File }

func (f osFile) Sync() error               { return fdatasync(f.File) }
func (f osFile) Allocate(size int64) error { return fallocate(f.File, size) }

func (f osFile) Size() (int64, error) {
	fi, err := f.Stat()
	if err != nil {
		return 0, err
	}
	return fi.Size(), nil
}
