//go:build !linux

package childproc

import (
	"errors"
	"os"
	"syscall"
	"time"
)

// SysProcAttr sets nothing where Pdeathsig is unavailable: a server is
// stopped by its harness's Main or cleanup, and one left by a crashed test
// binary must be killed by hand (its data lives under a temporary
// directory named after its harness).
func SysProcAttr() *syscall.SysProcAttr { return nil }

// Exited cannot tell without reaping the child here, so it says no: a
// server that crashed at start-up is noticed when it does not answer in
// time.
func Exited(*os.Process) bool { return false }

var errNoProc = errors.New("childproc: RSS and CPU time are read from /proc, on Linux only")

// RSS is unknown here.
func RSS(int) (int64, error) { return 0, errNoProc }

// CPUTime is unknown here.
func CPUTime(int) (time.Duration, error) { return 0, errNoProc }
