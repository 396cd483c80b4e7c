// Package servicetest runs the examples/persister service as a process for
// tests: it builds the binary, starts it, keeps what it prints, reads its
// listen address from its log, scrapes its HTTP endpoints, and stops it
// with SIGTERM or SIGKILL. Every process it starts is killed when its test
// ends.
package servicetest

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Package is the import path of the service.
const Package = "github.com/go-whisk/activationstore/examples/persister"

// startTimeout bounds how long Start waits for the listen address: a
// loaded CI machine may take long to connect to Kafka and CouchDB.
const startTimeout = 60 * time.Second

// Build compiles the service into a temporary directory of t and returns
// the binary's path. race builds it with the race detector. The go build
// cache makes a second build in the same run cheap.
func Build(t testing.TB, race bool) string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("servicetest: the go command is needed to build %s: %v", Package, err)
	}
	bin := filepath.Join(t.TempDir(), "persister")
	args := []string{"build", "-o", bin}
	if race {
		args = append(args, "-race")
	}
	args = append(args, Package)
	if out, err := exec.Command(goBin, args...).CombinedOutput(); err != nil {
		t.Fatalf("servicetest: go %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return bin
}

// Service is a running service process.
type Service struct {
	cmd       *exec.Cmd
	listening chan struct{} // closed once addr is known
	exited    chan struct{}
	err       error // of cmd.Wait, once exited is closed

	mu    sync.Mutex
	addr  string
	lines []string
}

// Start runs bin as Run does and waits until it logs "persister started"
// with its listen address. The test fails if the process exits first or
// does not listen within 60 s.
func Start(t testing.TB, bin string, env []string, args ...string) *Service {
	t.Helper()
	s := Run(t, bin, env, args...)
	select {
	case <-s.listening:
	case <-s.exited:
		t.Fatalf("servicetest: the service exited before listening: %v\n%s", s.err, s.Logs())
	case <-time.After(startTimeout):
		t.Fatalf("servicetest: the service did not listen within %v:\n%s", startTimeout, s.Logs())
	}
	return s
}

// Run runs bin with args, env added to the test's own environment, and
// returns at once: Wait tells how a service meant to fail ended. What the
// process writes to its standard output and error is kept line by line.
func Run(t testing.TB, bin string, env []string, args ...string) *Service {
	t.Helper()
	// One pipe for both streams keeps their lines in the order written.
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatalf("servicetest: %v", err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = w, w
	err = cmd.Start()
	_ = w.Close() // the child has its own copy
	if err != nil {
		_ = r.Close()
		t.Fatalf("servicetest: start %s: %v", bin, err)
	}
	s := &Service{cmd: cmd, listening: make(chan struct{}), exited: make(chan struct{})}
	go func() {
		s.read(r)
		_ = r.Close()
		s.err = cmd.Wait()
		close(s.exited)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-s.exited
	})
	return s
}

// read keeps each line of output, however long, and notes the listen
// address.
func (s *Service) read(r io.Reader) {
	br := bufio.NewReader(r)
	for {
		line, err := br.ReadString('\n')
		if line = strings.TrimSuffix(line, "\n"); line != "" || err == nil {
			s.keep(line)
		}
		if err != nil {
			return
		}
	}
}

func (s *Service) keep(line string) {
	var rec struct {
		Msg    string `json:"msg"`
		Listen string `json:"listen"`
	}
	started := json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == "persister started" && rec.Listen != ""
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lines = append(s.lines, line)
	if started && s.addr == "" {
		s.addr = rec.Listen
		close(s.listening)
	}
}

// Addr is the address of the service's HTTP endpoints ("" until it logs
// it; Start waits for it).
func (s *Service) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addr
}

// Lines returns the lines the service printed so far.
func (s *Service) Lines() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.lines...)
}

// Logs returns what the service printed so far.
func (s *Service) Logs() string { return strings.Join(s.Lines(), "\n") }

// Tail returns the last n lines the service printed.
func (s *Service) Tail(n int) string {
	lines := s.Lines()
	return strings.Join(lines[max(len(lines)-n, 0):], "\n")
}

// Wait waits up to d for the process to exit and returns its exit error
// (nil: exit 0); exited is false when it is still running after d.
func (s *Service) Wait(d time.Duration) (exited bool, err error) {
	select {
	case <-s.exited:
		return true, s.err
	case <-time.After(d):
		return false, nil
	}
}

// Kill sends SIGKILL and waits for the process to be gone.
func (s *Service) Kill(t testing.TB) {
	t.Helper()
	if err := s.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatalf("servicetest: SIGKILL: %v", err)
	}
	<-s.exited
}

// Terminate sends SIGTERM and returns the process's exit error (nil: exit
// 0). The test fails if the process is still running after timeout.
func (s *Service) Terminate(t testing.TB, timeout time.Duration) error {
	t.Helper()
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("servicetest: SIGTERM: %v", err)
	}
	exited, err := s.Wait(timeout)
	if !exited {
		t.Fatalf("servicetest: the service did not exit within %v of SIGTERM:\n%s", timeout, s.Tail(40))
	}
	return err
}

// client bounds each request, so that a hung endpoint fails the test
// rather than hanging it.
var client = &http.Client{Timeout: 10 * time.Second}

// Get requests path from the service's HTTP endpoints and returns the
// status and body. The test fails if the request does.
func (s *Service) Get(t testing.TB, path string) (status int, body string) {
	t.Helper()
	status, b, err := s.get(path)
	if err != nil {
		t.Fatalf("servicetest: GET %s: %v", path, err)
	}
	return status, string(b)
}

func (s *Service) get(path string) (int, []byte, error) {
	resp, err := client.Get("http://" + s.Addr() + path)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

// Metrics scrapes /metrics and returns the unlabelled samples whose names
// start with prefix, by name. It returns an error rather than failing the
// test, for scraping a service that may be killed at any moment.
func (s *Service) Metrics(prefix string) (map[string]float64, error) {
	status, body, err := s.get("/metrics")
	if err != nil {
		return nil, err
	}
	if status != http.StatusOK {
		return nil, fmt.Errorf("GET /metrics: HTTP %d", status)
	}
	out := map[string]float64{}
	for line := range strings.SplitSeq(string(body), "\n") {
		if !strings.HasPrefix(line, prefix) {
			continue
		}
		name, val, ok := strings.Cut(line, " ")
		if !ok || strings.Contains(name, "{") {
			continue
		}
		if v, err := strconv.ParseFloat(strings.TrimSpace(val), 64); err == nil {
			out[name] = v
		}
	}
	return out, nil
}

// Eventually polls cond every 50 ms until it holds; after d it fails the
// test, showing the last lines the service printed.
func (s *Service) Eventually(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s; the service's last lines:\n%s", d, what, s.Tail(40))
		}
		time.Sleep(50 * time.Millisecond)
	}
}
