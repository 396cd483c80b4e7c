package losstest

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

// BuildService compiles the examples/persister service into dir and
// returns the binary's path. race adds the race detector.
func BuildService(t testing.TB, dir string, race bool) string {
	t.Helper()
	bin := filepath.Join(dir, "persister")
	args := []string{"build", "-o", bin}
	if race {
		args = append(args, "-race")
	}
	args = append(args, "github.com/go-whisk/activationstore/examples/persister")
	out, err := exec.Command("go", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("losstest: go %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return bin
}

// Service is a running persister service process.
type Service struct {
	cmd    *exec.Cmd
	Addr   string // of its HTTP endpoints
	exited chan struct{}
	err    error // of cmd.Wait, once exited is closed

	mu   sync.Mutex
	logs []string
}

// StartService starts the binary with args and waits until it logs
// "persister started" with its listen address.
func StartService(t testing.TB, bin string, env []string, args ...string) *Service {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatalf("losstest: %v", err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("losstest: start %s: %v", bin, err)
	}
	s := &Service{cmd: cmd, exited: make(chan struct{})}
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			s.mu.Lock()
			s.logs = append(s.logs, line)
			s.mu.Unlock()
			var rec struct {
				Msg    string `json:"msg"`
				Listen string `json:"listen"`
			}
			if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == "persister started" && rec.Listen != "" {
				select {
				case addr <- rec.Listen:
				default:
				}
			}
		}
		s.err = cmd.Wait()
		close(s.exited)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-s.exited
	})
	select {
	case s.Addr = <-addr:
	case <-s.exited:
		t.Fatalf("losstest: the service exited before listening: %v\n%s", s.err, s.Logs())
	case <-time.After(60 * time.Second):
		t.Fatalf("losstest: the service did not start within 60 s:\n%s", s.Logs())
	}
	return s
}

// Logs returns what the service logged so far.
func (s *Service) Logs() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.Join(s.logs, "\n")
}

// Kill sends SIGKILL and waits for the process to be gone.
func (s *Service) Kill(t testing.TB) {
	t.Helper()
	if err := s.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatalf("losstest: SIGKILL: %v", err)
	}
	<-s.exited
}

// Terminate sends SIGTERM and returns the process's exit error (nil: exit 0).
func (s *Service) Terminate(t testing.TB, timeout time.Duration) error {
	t.Helper()
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("losstest: SIGTERM: %v", err)
	}
	select {
	case <-s.exited:
		return s.err
	case <-time.After(timeout):
		t.Fatalf("losstest: the service did not exit within %v of SIGTERM", timeout)
		return nil
	}
}

// Metrics scrapes /metrics and returns the unlabelled samples whose names
// start with prefix, by name.
func (s *Service) Metrics(prefix string) (map[string]float64, error) {
	c := &http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get("http://" + s.Addr + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /metrics: HTTP %d", resp.StatusCode)
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
