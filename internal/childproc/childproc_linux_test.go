package childproc

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"
)

func TestExitedSeesAnExitWithoutReaping(t *testing.T) {
	cmd := exec.Command("sleep", "0.2")
	cmd.SysProcAttr = SysProcAttr()
	if err := cmd.Start(); err != nil {
		t.Fatalf("start sleep: %v", err)
	}
	if Exited(cmd.Process) {
		t.Fatal("Exited says a running child has exited")
	}
	deadline := time.Now().Add(10 * time.Second)
	for !Exited(cmd.Process) {
		if time.Now().After(deadline) {
			t.Fatal("Exited never saw the child exit")
		}
		time.Sleep(10 * time.Millisecond)
	}
	// Not reaped: Wait still gets the exit status.
	if err := cmd.Wait(); err != nil {
		t.Fatalf("Wait after Exited: %v", err)
	}
}

// A child's CPU time counts towards its parent's tree, and only there.
func TestCPUTimeCountsDescendants(t *testing.T) {
	// sh → sh (a subshell) → a busy loop: a grandchild, as couchjs is
	// beam's (through erl_child_setup). The loop ends by itself too.
	p := &Process{
		Name: "busy tree",
		Log:  filepath.Join(t.TempDir(), "log"),
		Command: func() *exec.Cmd {
			return exec.Command("sh", "-c", `(i=0; while [ $i -lt 100000000 ]; do i=$((i+1)); done) & wait`)
		},
	}
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	pid := p.Pid()
	// Kill the whole tree: killing sh alone would orphan the busy loop.
	t.Cleanup(func() {
		for child := range children(pid) {
			_ = syscall.Kill(child, syscall.SIGKILL)
		}
		p.Kill()
	})
	var got time.Duration
	for deadline := time.Now().Add(20 * time.Second); got < 300*time.Millisecond; {
		if time.Now().After(deadline) {
			t.Fatalf("the busy grandchild's tree used %v in 20 s: want ≥ 300ms", got)
		}
		time.Sleep(100 * time.Millisecond)
		var err error
		if got, err = p.CPUTime(); err != nil {
			t.Fatal(err)
		}
	}
	// sh itself only waits: its own time is far less than its tree's.
	_, own, err := procStat(pid)
	if err != nil || time.Duration(own)*time.Second/clockTicks >= got/2 {
		t.Fatalf("sh's own CPU time %d ticks (%v) against its tree's %v: the tree's must be the grandchild's", own, err, got)
	}
	ppid, _, err := procStat(pid)
	if err != nil || ppid != int64(os.Getpid()) {
		t.Fatalf("procStat parent = %d, %v; want this process %d", ppid, err, os.Getpid())
	}
	if _, err := CPUTime(1 << 30); err == nil {
		t.Error("CPUTime of a missing process: want an error")
	}
}

// children are the descendants of root, from /proc.
func children(root int) map[int]bool {
	out := map[int]bool{}
	entries, _ := os.ReadDir("/proc")
	for changed := true; changed; {
		changed = false
		for _, e := range entries {
			pid, err := strconv.Atoi(e.Name())
			if err != nil || out[pid] {
				continue
			}
			if ppid, _, err := procStat(pid); err == nil && (int(ppid) == root || out[int(ppid)]) {
				out[pid], changed = true, true
			}
		}
	}
	return out
}
