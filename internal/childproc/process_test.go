//go:build unix

package childproc

import (
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func shProcess(t *testing.T, script string) *Process {
	t.Helper()
	p := &Process{
		Name:    "test shell",
		Log:     filepath.Join(t.TempDir(), "sh.log"),
		Command: func() *exec.Cmd { return exec.Command("sh", "-c", script) },
	}
	t.Cleanup(p.Kill)
	return p
}

// waitLog waits until the process's log holds s.
func waitLog(t *testing.T, p *Process, s string) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(p.LogTail(1<<20), s); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("log never held %q; it holds:\n%s", s, p.LogTail(1<<20))
		}
	}
}

func TestProcessStartKillRestart(t *testing.T) {
	p := shProcess(t, `echo "pid $$"; exec sleep 30`)
	if p.Running() || p.Pid() != 0 || p.Started() {
		t.Fatal("a process never started says it runs")
	}
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	pid := p.Pid()
	if !p.Running() || pid == 0 || !p.Started() {
		t.Fatalf("after Start: Running %v, Pid %d", p.Running(), pid)
	}
	waitLog(t, p, "pid "+strconv.Itoa(pid)+"\n")
	if err := p.Start(); err == nil || !strings.Contains(err.Error(), "running already") {
		t.Fatalf("second Start: %v, want an error saying it runs already", err)
	}
	if runtime.GOOS == "linux" {
		rss, err := p.RSS()
		if err != nil || rss < 4<<10 || rss > 1<<30 {
			t.Fatalf("RSS of sleep = %d, %v", rss, err)
		}
	}

	p.Kill()
	if p.Running() || p.Pid() != 0 {
		t.Fatal("running after Kill")
	}
	if err := syscall.Kill(pid, 0); err == nil {
		t.Fatalf("process %d still exists (or was not reaped) after Kill", pid)
	}
	if _, err := p.RSS(); err == nil || !strings.Contains(err.Error(), "not running") {
		t.Fatalf("RSS of a killed process: %v, want an error saying it is not running", err)
	}

	if err := p.Restart(); err != nil {
		t.Fatal(err)
	}
	again := p.Pid()
	if again == 0 || again == pid {
		t.Fatalf("after Restart: pid %d (was %d)", again, pid)
	}
	waitLog(t, p, "pid "+strconv.Itoa(again)+"\n")
	// One log across starts: both runs and both banners.
	log := p.LogTail(1 << 20)
	if n := strings.Count(log, "=== starting test shell at "); n != 2 || !strings.Contains(log, "pid "+strconv.Itoa(pid)+"\n") {
		t.Fatalf("log after a restart has %d banners:\n%s", n, log)
	}
	// Restart kills a running process first.
	if err := p.Restart(); err != nil {
		t.Fatal(err)
	}
	if third := p.Pid(); third == 0 || third == again || syscall.Kill(again, 0) == nil {
		t.Fatalf("Restart of a running process: pid %d, the old %d still there: %v", third, again, syscall.Kill(again, 0) == nil)
	}
}

func TestSignalWaitsThenKills(t *testing.T) {
	// Ignores SIGTERM: Signal kills it once grace is over.
	stubborn := shProcess(t, `trap "" TERM; echo ready; while :; do sleep 0.05; done`)
	if err := stubborn.Start(); err != nil {
		t.Fatal(err)
	}
	waitLog(t, stubborn, "ready")
	start := time.Now()
	stubborn.Signal(syscall.SIGTERM, 300*time.Millisecond)
	if d := time.Since(start); d < 300*time.Millisecond || stubborn.Running() {
		t.Fatalf("Signal(TERM, 300ms) on a process ignoring TERM: returned in %v, running %v", d, stubborn.Running())
	}

	// Honours SIGTERM: Signal returns as soon as it exits.
	polite := shProcess(t, `exec sleep 30`)
	if err := polite.Start(); err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	polite.Signal(syscall.SIGTERM, 20*time.Second)
	if d := time.Since(start); d > 10*time.Second || polite.Running() {
		t.Fatalf("Signal(TERM) on sleep: returned in %v, running %v", d, polite.Running())
	}
	polite.Signal(syscall.SIGTERM, time.Second) // not running: nothing to do
}

func TestWaitReady(t *testing.T) {
	ctx := context.Background()
	never := &Process{Name: "never started"}
	if err := never.WaitReady(ctx, "", time.Millisecond, func(context.Context) error { return nil }); err == nil {
		t.Fatal("WaitReady of a process never started: want an error")
	}

	// Ready on the third probe.
	p := shProcess(t, `exec sleep 30`)
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	probes := 0
	err := p.WaitReady(ctx, "", time.Millisecond, func(context.Context) error {
		if probes++; probes < 3 {
			return errors.New("not yet")
		}
		return nil
	})
	if err != nil || probes != 3 {
		t.Fatalf("WaitReady = %v after %d probes, want success on the third", err, probes)
	}

	// Never ready: the context ends it, with the last probe's error.
	short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	err = p.WaitReady(short, "", 10*time.Millisecond, func(context.Context) error { return errors.New("probe refused") })
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "probe refused") {
		t.Fatalf("WaitReady past its deadline = %v", err)
	}
}

func TestWaitReadySeesAnExit(t *testing.T) {
	p := shProcess(t, `echo "bind 127.0.0.1:1234: Address already in use"; exit 3`)
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	notYet := func(context.Context) error { return errors.New("not yet") }
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := p.WaitReady(ctx, "Address already in use", 10*time.Millisecond, notYet)
	if !errors.Is(err, ErrPortTaken) || !strings.Contains(err.Error(), "test shell exited during start-up") || !strings.Contains(err.Error(), "127.0.0.1:1234") {
		t.Fatalf("WaitReady of a process that cannot bind = %v, want ErrPortTaken quoting the log", err)
	}
	if err := p.WaitReady(ctx, "eaddrinuse", 10*time.Millisecond, notYet); errors.Is(err, ErrPortTaken) || !strings.Contains(err.Error(), "exited") {
		t.Fatalf("WaitReady with a bind message the log lacks = %v, want an exit without ErrPortTaken", err)
	}
}

func TestLogTailStartsAtALine(t *testing.T) {
	p := &Process{Log: filepath.Join(t.TempDir(), "log")}
	if got := p.LogTail(100); !strings.Contains(got, "cannot read") {
		t.Fatalf("LogTail of a missing log = %q", got)
	}
	var b strings.Builder
	for i := range 100 {
		b.WriteString("line " + strconv.Itoa(i) + "\n")
	}
	if err := os.WriteFile(p.Log, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	got := p.LogTail(30)
	if len(got) > 30 || !strings.HasPrefix(got, "line ") || !strings.HasSuffix(got, "line 99\n") {
		t.Fatalf("LogTail(30) = %q", got)
	}
	if got := p.LogTail(1 << 20); got != b.String() {
		t.Fatalf("LogTail of a short log lost lines: %d of %d bytes", len(got), b.Len())
	}
}

func TestFreePorts(t *testing.T) {
	ports, err := FreePorts(8)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[int]bool{}
	for _, port := range ports {
		if port <= 0 || seen[port] {
			t.Fatalf("FreePorts(8) = %v: want distinct ports", ports)
		}
		seen[port] = true
		l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
		if err != nil {
			t.Fatalf("port %d of FreePorts is not free: %v", port, err)
		}
		_ = l.Close()
	}
}

func TestRetryPortTaken(t *testing.T) {
	ctx := context.Background()
	boots, resets := 0, 0
	err := RetryPortTaken(ctx, func() error {
		if boots++; boots < 3 {
			return ErrPortTaken
		}
		return nil
	}, func() { resets++ })
	if err != nil || boots != 3 || resets != 2 {
		t.Fatalf("two clashes then success: %v after %d boots, %d resets", err, boots, resets)
	}
	boots, resets = 0, 0
	err = RetryPortTaken(ctx, func() error { boots++; return ErrPortTaken }, func() { resets++ })
	if !errors.Is(err, ErrPortTaken) || boots != 3 || resets != 2 {
		t.Fatalf("clashes every time: %v after %d boots, %d resets; want 3 attempts", err, boots, resets)
	}
	other := errors.New("config refused")
	boots = 0
	if err := RetryPortTaken(ctx, func() error { boots++; return other }, func() {}); err != other || boots != 1 {
		t.Fatalf("another error: %v after %d boots, want it at once", err, boots)
	}
}
