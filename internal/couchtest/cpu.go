package couchtest

import (
	"errors"
	"os"
	"strconv"
	"strings"
	"time"
)

// CPUTime is the CPU time (user and system) the server's processes have
// used so far: every node's VM and its children, among them the couchjs
// processes that build view indexes in the background. Linux only.
//
// Benchmarks take it before and after a phase to tell the server's work
// from the client's: on 2 cores they compete for the same CPU.
func (s *Server) CPUTime() (time.Duration, error) {
	ticks, err := s.sumOverNodes(treeTicks)
	return ticksDuration(ticks), err
}

// SharedCPUTime is CPUTime of the server URL returns, for benchmarks. It
// fails when the server was not started by this test binary (COUCHDB_URL).
func SharedCPUTime() (time.Duration, error) {
	shared.mu.Lock()
	s := shared.srv
	shared.mu.Unlock()
	if s == nil {
		return 0, errors.New("couchtest: no CouchDB server started by this test binary (COUCHDB_URL names an external one)")
	}
	return s.CPUTime()
}

// clockTicks is the kernel's USER_HZ, the unit of /proc/PID/stat's times:
// 100 on every Linux architecture Go supports.
const clockTicks = 100

func ticksDuration(ticks int64) time.Duration { return time.Duration(ticks) * time.Second / clockTicks }

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
		return 0, errors.New("couchtest: process " + strconv.Itoa(root) + " not found in /proc")
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
		return 0, 0, errors.New("couchtest: malformed /proc stat")
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, 0, errors.New("couchtest: short /proc stat")
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
