package childproc

import (
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// SysProcAttr makes the kernel kill the child when the test binary dies.
// (The signal follows the OS thread that started the child; Go only ends
// threads whose goroutine exits while locked to it, which the harnesses
// never do.)
func SysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}

// Exited reports whether the child has exited, without reaping it
// (WNOWAIT): the caller's Wait does, and returns at once.
func Exited(p *os.Process) bool {
	var info unix.Siginfo
	err := unix.Waitid(unix.P_PID, p.Pid, &info, unix.WEXITED|unix.WNOHANG|unix.WNOWAIT, nil)
	return err != nil || info.Signo != 0
}
