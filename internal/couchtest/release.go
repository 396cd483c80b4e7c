package couchtest

import (
	"archive/tar"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"

	"github.com/go-whisk/activationstore/internal/filelock"
)

// EnvRelease names the environment variable that points at an Apache
// CouchDB release: a release tarball (couchdb-*.tar.gz) or a folder that
// holds one, or an extracted release (a folder with bin/couchdb).
const EnvRelease = "COUCHDB_RELEASE"

// errNoRelease says that no CouchDB release was found; the PouchDB test
// server is the fallback then.
var errNoRelease = errors.New("no Apache CouchDB release found (looked for shared/couchdb/couchdb-*.tar.gz beside the module and above it; set " + EnvRelease + " to a release tarball or an extracted release)")

var release struct {
	once sync.Once
	root string // extracted release: bin/couchdb, etc/default.ini
	err  error
}

// releaseRoot returns the folder of an extracted CouchDB release, extracting
// the tarball once into the user cache dir. It returns errNoRelease (wrapped)
// when there is none.
func releaseRoot() (string, error) {
	release.once.Do(func() {
		release.root, release.err = findRelease()
	})
	return release.root, release.err
}

// HaveRelease reports whether a real CouchDB release is available to start
// (COUCHDB_RELEASE, or shared/couchdb beside the module), extracting it if
// needed; the error says why not.
func HaveRelease() (bool, error) {
	_, err := releaseRoot()
	return err == nil, err
}

func findRelease() (string, error) {
	if p := os.Getenv(EnvRelease); p != "" {
		root, err := releaseAt(p)
		if err != nil {
			return "", fmt.Errorf("%s=%s: %w", EnvRelease, p, err)
		}
		if root == "" {
			return "", fmt.Errorf("%s=%s: no couchdb-*.tar.gz and no bin/couchdb there", EnvRelease, p)
		}
		return root, nil
	}
	mod, err := moduleRoot()
	if err != nil {
		return "", err
	}
	// CI clones the repository with shared/ beside it; a git worktree sits
	// deeper, so look in every folder above the module.
	for dir := filepath.Dir(mod); ; dir = filepath.Dir(dir) {
		cand := filepath.Join(dir, "shared", "couchdb")
		if st, err := os.Stat(cand); err == nil && st.IsDir() {
			root, err := releaseAt(cand)
			if err != nil {
				return "", fmt.Errorf("%s: %w", cand, err)
			}
			if root != "" {
				return root, nil
			}
		}
		if filepath.Dir(dir) == dir {
			return "", errNoRelease
		}
	}
}

// releaseAt resolves p (tarball, folder with a tarball, or extracted
// release) to an extracted release; "" when p holds none.
func releaseAt(p string) (string, error) {
	st, err := os.Stat(p)
	if err != nil {
		return "", err
	}
	if !st.IsDir() {
		return extractRelease(p)
	}
	if isRelease(p) {
		return p, nil
	}
	tars, _ := filepath.Glob(filepath.Join(p, "couchdb-*.tar.gz"))
	if len(tars) == 0 {
		return "", nil
	}
	return extractRelease(tars[len(tars)-1]) // the newest by name
}

func isRelease(dir string) bool {
	_, err1 := os.Stat(filepath.Join(dir, "bin", "couchdb"))
	_, err2 := os.Stat(filepath.Join(dir, "etc", "default.ini"))
	return err1 == nil && err2 == nil
}

// moduleRoot is the folder of go.mod above this source file.
func moduleRoot() (string, error) {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return "", errors.New("cannot locate the couchtest sources")
	}
	for dir := filepath.Dir(file); ; dir = filepath.Dir(dir) {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		if filepath.Dir(dir) == dir {
			return "", errors.New("go.mod not found above " + file)
		}
	}
}

// extractRelease unpacks a release tarball once into
// <user cache dir>/activationstore/couchdb/<name>-<sha256 prefix>, under a
// file lock so that test binaries running at once extract it once, and
// returns the release folder in it.
func extractRelease(tarball string) (string, error) {
	sum, err := fileSHA256(tarball)
	if err != nil {
		return "", err
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("no user cache dir to extract CouchDB into: %w", err)
	}
	base := filepath.Join(cache, "activationstore", "couchdb")
	if err := os.MkdirAll(base, 0o755); err != nil {
		return "", err
	}
	name := strings.TrimSuffix(filepath.Base(tarball), ".tar.gz") + "-" + sum[:12]
	dest := filepath.Join(base, name)
	unlock, err := filelock.Lock(dest + ".lock")
	if err != nil {
		return "", fmt.Errorf("lock %s: %w", dest, err)
	}
	defer unlock()
	if root, ok := releaseIn(dest); ok {
		return root, nil
	}
	tmp, err := os.MkdirTemp(base, name+".tmp-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp) // after a successful rename, nothing is left
	if err := untar(tarball, tmp); err != nil {
		return "", fmt.Errorf("extract %s: %w", tarball, err)
	}
	if _, ok := releaseIn(tmp); !ok {
		return "", fmt.Errorf("%s holds no CouchDB release (no bin/couchdb and etc/default.ini)", tarball)
	}
	_ = os.RemoveAll(dest) // a partial one from an older layout
	if err := os.Rename(tmp, dest); err != nil {
		return "", err
	}
	root, _ := releaseIn(dest)
	return root, nil
}

// releaseIn finds the release in an extraction folder: the folder itself
// or its only subfolder.
func releaseIn(dir string) (string, bool) {
	if isRelease(dir) {
		return dir, true
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return "", false
	}
	for _, e := range entries {
		if e.IsDir() && isRelease(filepath.Join(dir, e.Name())) {
			return filepath.Join(dir, e.Name()), true
		}
	}
	return "", false
}

func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// untar extracts a .tar.gz into dir, refusing paths that leave it.
func untar(tarball, dir string) error {
	f, err := os.Open(tarball)
	if err != nil {
		return err
	}
	defer f.Close()
	gz, err := gzip.NewReader(f)
	if err != nil {
		return err
	}
	tr := tar.NewReader(gz)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		name := filepath.Clean(filepath.FromSlash(h.Name))
		if name == "." {
			continue
		}
		if filepath.IsAbs(name) || name == ".." || strings.HasPrefix(name, ".."+string(filepath.Separator)) {
			return fmt.Errorf("entry %q leaves the extraction folder", h.Name)
		}
		target := filepath.Join(dir, name)
		mode := os.FileMode(h.Mode).Perm() | 0o200 // owner-writable, so the cache can be removed
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(target, mode|0o700); err != nil {
				return err
			}
		case tar.TypeReg:
			if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
				return err
			}
			out, err := os.OpenFile(target, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode)
			if err != nil {
				return err
			}
			_, err = io.Copy(out, tr)
			if cerr := out.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return err
			}
		case tar.TypeSymlink:
			if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
				return err
			}
			if err := os.Symlink(h.Linkname, target); err != nil {
				return err
			}
		case tar.TypeLink:
			src := filepath.Join(dir, filepath.Clean(filepath.FromSlash(h.Linkname)))
			if err := os.Link(src, target); err != nil {
				return err
			}
		default:
			// Devices, FIFOs: a release has none.
		}
	}
}
