package childproc

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

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

// RSS is the resident set size of process pid, in bytes.
func RSS(pid int) (int64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, err
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			return kb << 10, err
		}
	}
	return 0, fmt.Errorf("no VmRSS in /proc/%d/status", pid)
}

// CPUTime is the CPU time, user and system, of process pid and of every
// live descendant.
func CPUTime(pid int) (time.Duration, error) {
	ticks, err := treeTicks(pid)
	return time.Duration(ticks) * time.Second / clockTicks, err
}

// clockTicks is the kernel's USER_HZ, the unit of /proc/PID/stat's times:
// 100 on every Linux architecture Go supports.
const clockTicks = 100

// treeTicks sums the CPU time, in clock ticks, of root and of every live
// descendant.
func treeTicks(root int) (int64, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0, err
	}
	type proc struct{ ppid, ticks int64 }
	procs := map[int]proc{}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		ppid, ticks, err := procStat(pid)
		if err != nil {
			continue // exited meanwhile
		}
		procs[pid] = proc{ppid, ticks}
	}
	if _, ok := procs[root]; !ok {
		return 0, fmt.Errorf("process %d not found in /proc", root)
	}
	var ticks int64
	for pid, p := range procs {
		for cur := pid; ; {
			if cur == root {
				ticks += p.ticks
				break
			}
			parent, ok := procs[cur]
			if !ok || parent.ppid <= 1 {
				break
			}
			cur = int(parent.ppid)
		}
	}
	return ticks, nil
}

// procStat reads a process's parent and its user plus system time in
// clock ticks from /proc/PID/stat.
func procStat(pid int) (ppid, ticks int64, err error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, 0, err
	}
	// The command name, in parentheses, may hold spaces: fields are
	// counted after its closing parenthesis (state is field 3).
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0, 0, fmt.Errorf("malformed /proc/%d/stat", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, 0, fmt.Errorf("short /proc/%d/stat", pid)
	}
	ppid, err = strconv.ParseInt(f[1], 10, 64) // field 4
	if err != nil {
		return 0, 0, err
	}
	utime, err := strconv.ParseInt(f[11], 10, 64) // field 14
	if err != nil {
		return 0, 0, err
	}
	stime, err := strconv.ParseInt(f[12], 10, 64) // field 15
	if err != nil {
		return 0, 0, err
	}
	return ppid, utime + stime, nil
}
