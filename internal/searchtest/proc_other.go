//go:build !linux

package searchtest

import (
	"os"
	"syscall"
)

// childProcAttr sets nothing where Pdeathsig is unavailable: a server JVM
// is stopped by Main (or the test's cleanup), and one left by a crashed
// test binary must be killed by hand (its data directory is under a
// temporary directory named searchtest-…).
func childProcAttr() *syscall.SysProcAttr { return nil }

// exited cannot tell without reaping the child here, so it says no: a
// server that crashed at start-up is noticed when it does not answer in
// time.
func exited(*os.Process) bool { return false }
