package searchtest

import (
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// childProcAttr makes the kernel kill a server JVM when the test binary
// dies, even by SIGKILL or a test timeout, so that no server outlives its
// tests. (The signal follows the OS thread that started the child; Go
// only ends threads whose goroutine exits while locked to it, which
// nothing here does.)
func childProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}

// exited reports whether the child has exited, without reaping it
// (WNOWAIT): the caller's Wait does, and returns at once.
func exited(p *os.Process) bool {
	var info unix.Siginfo
	err := unix.Waitid(unix.P_PID, p.Pid, &info, unix.WEXITED|unix.WNOHANG|unix.WNOWAIT, nil)
	return err != nil || info.Signo != 0
}
