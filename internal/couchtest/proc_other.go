//go:build !linux

package couchtest

import (
	"os"
	"syscall"
)

// childProcAttr sets nothing where Pdeathsig is unavailable: a CouchDB node
// is stopped by Main (or Close); one left by a crashed test binary
// must be killed by hand (its command line names couchtest).
func childProcAttr() *syscall.SysProcAttr { return nil }

// exited cannot tell without reaping the child here, so it says no: a
// node that crashed at start-up is noticed when it does not answer in
// time.
func exited(*os.Process) bool { return false }
