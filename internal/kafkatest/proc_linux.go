package kafkatest

import "syscall"

// childProcAttr makes the kernel kill a broker JVM when the test binary
// dies, even by SIGKILL or a test timeout, so that no broker outlives its
// tests. (The signal follows the OS thread that started the child; Go
// only ends threads whose goroutine exits while locked to it, which
// nothing here does.)
func childProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
