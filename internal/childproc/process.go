package childproc

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"sync"
	"time"
)

// Process is one server process of a test harness (a Kafka or ZooKeeper
// JVM, an Elasticsearch JVM, a CouchDB VM) that a test may kill and start
// again: each start runs a fresh command from Command, its output
// appended to one log file, so that the log tells the whole story across
// restarts.
//
// It polls for the process's exit rather than waiting in a goroutine: the
// shared servers outlive the tests that check for leaked goroutines.
type Process struct {
	// Name says which process in errors and in the log's start banners:
	// "node 1", "the ZooKeeper server".
	Name string
	// Log is the file the process's standard output and error go to.
	Log string
	// Command makes the command of each start; Start sets its Stdout,
	// Stderr and SysProcAttr.
	Command func() *exec.Cmd

	mu     sync.Mutex
	cmd    *exec.Cmd // nil when never started
	waited bool      // cmd has exited and was reaped
}

// Start starts the process, after a banner line in its log; it fails when
// the process runs already.
func (p *Process) Start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.start()
}

func (p *Process) start() error {
	if p.running() {
		return fmt.Errorf("%s is running already", p.Name)
	}
	log, err := os.OpenFile(p.Log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer log.Close() // the child has its own descriptor
	fmt.Fprintf(log, "=== starting %s at %s ===\n", p.Name, time.Now().Format(time.RFC3339Nano))
	cmd := p.Command()
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = SysProcAttr()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", p.Name, err)
	}
	p.cmd, p.waited = cmd, false
	return nil
}

// Restart kills the process if it runs and starts it again.
func (p *Process) Restart() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.signal(os.Kill, 0)
	return p.start()
}

// Started reports whether Start ever succeeded.
func (p *Process) Started() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cmd != nil
}

// Running reports whether the process is alive, reaping it when it has
// exited.
func (p *Process) Running() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.running()
}

// running is Running with p.mu held.
func (p *Process) running() bool {
	if p.cmd == nil || p.waited {
		return false
	}
	if !Exited(p.cmd.Process) {
		return true
	}
	_ = p.cmd.Wait()
	p.waited = true
	return false
}

// Pid is the process id, 0 when the process is not running.
func (p *Process) Pid() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.running() {
		return 0
	}
	return p.cmd.Process.Pid
}

// Kill kills the process with SIGKILL, as a crash or power loss would (no
// shutdown hook runs), and waits for it to exit.
func (p *Process) Kill() { p.Signal(os.Kill, 0) }

// Signal sends sig, as an operator would (SIGTERM), waits up to grace for
// the process to exit, then kills it, and waits for it to exit. It does
// nothing when the process is not running.
func (p *Process) Signal(sig os.Signal, grace time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.signal(sig, grace)
}

func (p *Process) signal(sig os.Signal, grace time.Duration) {
	if !p.running() {
		return
	}
	_ = p.cmd.Process.Signal(sig)
	if sig != os.Kill {
		for deadline := time.Now().Add(grace); !Exited(p.cmd.Process); time.Sleep(20 * time.Millisecond) {
			if time.Now().After(deadline) {
				_ = p.cmd.Process.Kill()
				break
			}
		}
	}
	_ = p.cmd.Wait()
	p.waited = true
}

// RSS is the resident set size of the process, in bytes (Linux only).
func (p *Process) RSS() (int64, error) {
	pid, err := p.livePid()
	if err != nil {
		return 0, err
	}
	return RSS(pid)
}

// CPUTime is the CPU time, user and system, that the process and its
// live descendants have used (Linux only): a CouchDB VM's includes the
// couchjs processes that build its views.
func (p *Process) CPUTime() (time.Duration, error) {
	pid, err := p.livePid()
	if err != nil {
		return 0, err
	}
	return CPUTime(pid)
}

func (p *Process) livePid() (int, error) {
	pid := p.Pid()
	if pid == 0 {
		return 0, fmt.Errorf("%s is not running", p.Name)
	}
	return pid, nil
}

// LogTail is the end of the process's log, at most max bytes, from a line
// start; a note instead when the log cannot be read.
func (p *Process) LogTail(max int64) string {
	f, err := os.Open(p.Log)
	if err != nil {
		return fmt.Sprintf("(cannot read %s: %v)", p.Log, err)
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && st.Size() > max {
		_, _ = f.Seek(st.Size()-max, io.SeekStart)
	}
	b, _ := io.ReadAll(io.LimitReader(f, max))
	if i := bytes.IndexByte(b, '\n'); i >= 0 && int64(len(b)) == max {
		b = b[i+1:]
	}
	return string(b)
}

// ErrPortTaken marks the exit of a process that could not bind a port
// FreePorts picked: another process took it in between. Start again on
// fresh ports (RetryPortTaken).
var ErrPortTaken = errors.New("a port was taken by another process")

// WaitReady polls probe every interval until it succeeds. It fails early
// when the process exits, with its log's end, wrapping ErrPortTaken when
// the log holds bindFailure (the server's message for a port in use:
// "Address already in use", "eaddrinuse"); and when ctx ends, with the
// last probe's error.
func (p *Process) WaitReady(ctx context.Context, bindFailure string, interval time.Duration, probe func(context.Context) error) error {
	if !p.Started() {
		return fmt.Errorf("%s was never started", p.Name)
	}
	for {
		if !p.Running() {
			return p.exitError(bindFailure)
		}
		last := probe(ctx)
		if last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s not ready: %w (last: %v); its log %s ends with:\n%s", p.Name, ctx.Err(), last, p.Log, p.LogTail(6<<10))
		case <-time.After(interval):
		}
	}
}

func (p *Process) exitError(bindFailure string) error {
	err := fmt.Errorf("%s exited during start-up; its log %s ends with:\n%s", p.Name, p.Log, p.LogTail(6<<10))
	if b, _ := os.ReadFile(p.Log); bindFailure != "" && bytes.Contains(b, []byte(bindFailure)) {
		err = fmt.Errorf("%w: %w", ErrPortTaken, err)
	}
	return err
}

// RetryPortTaken runs boot up to three times while it fails with
// ErrPortTaken (ports are picked free, then bound by the servers, and
// another process may take one in between), calling reset before each new
// attempt to kill what the failed one started.
func RetryPortTaken(ctx context.Context, boot func() error, reset func()) error {
	for attempt := 1; ; attempt++ {
		err := boot()
		if err == nil || attempt == 3 || !errors.Is(err, ErrPortTaken) || ctx.Err() != nil {
			return err
		}
		reset()
	}
}

// FreePorts picks n distinct free loopback ports, holding each until all
// are chosen.
func FreePorts(n int) ([]int, error) {
	ports := make([]int, n)
	held := make([]net.Listener, 0, n)
	defer func() {
		for _, l := range held {
			_ = l.Close()
		}
	}()
	for i := range ports {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		held = append(held, l)
		ports[i] = l.Addr().(*net.TCPAddr).Port
	}
	return ports, nil
}
