//go:build !linux

package kafkatest

import "syscall"

// childProcAttr sets nothing where Pdeathsig is unavailable: a broker JVM
// is stopped by Main (or Close), and one left by a crashed test binary
// must be killed by hand (its command line names kafkatest-apache).
func childProcAttr() *syscall.SysProcAttr { return nil }
