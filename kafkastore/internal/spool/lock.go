package spool

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/go-whisk/activationstore/internal/filelock"
)

// lockDir takes dir/LOCK for good (flock: the kernel releases it when the
// process dies) and writes the pid in it for the error of the next owner.
func lockDir(dir string) (unlock func(), err error) {
	path := filepath.Join(dir, "LOCK")
	unlock, err = filelock.TryLock(path)
	if errors.Is(err, filelock.ErrHeld) {
		holder := ""
		if b, rerr := os.ReadFile(path); rerr == nil && len(strings.TrimSpace(string(b))) > 0 {
			holder = " by pid " + strings.TrimSpace(string(b))
		}
		return nil, fmt.Errorf("%w: %s is held%s (one Spool per directory: close the other or give this one its own directory)", ErrLocked, dir, holder)
	}
	if err != nil {
		return nil, fmt.Errorf("spool: lock %s (check the directory's permissions): %w", path, err)
	}
	// A second descriptor: closing it does not release the flock.
	_ = os.WriteFile(path, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644)
	return unlock, nil
}
