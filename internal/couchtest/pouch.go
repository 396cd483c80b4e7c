package couchtest

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/go-whisk/activationstore/internal/filelock"
)

// pouchServer is the fallback test server: a node process serving the
// CouchDB protocol from memory (PouchDB behind express-pouchdb). Its data is
// lost when it stops.
type pouchServer struct {
	url   string
	cmd   *exec.Cmd
	stdin io.WriteCloser
	logs  *tailBuffer
	done  chan struct{} // closed when the process has exited
	once  sync.Once
}

// startPouch starts the PouchDB test server on 127.0.0.1 and a free port.
// ctx bounds the start-up only (including "npm ci" when the node modules
// are missing).
func startPouch(ctx context.Context, cfg serverConfig) (*pouchServer, error) {
	dir, err := serverDir()
	if err != nil {
		return nil, err
	}
	node, err := exec.LookPath("node")
	if err != nil {
		return nil, errors.New("node is not installed (need Node.js ≥ 18 on PATH to run the CouchDB test server; or set " + EnvURL + " to a CouchDB server)")
	}
	if err := ensureModules(ctx, dir); err != nil {
		return nil, err
	}

	args := []string{"server.js", "--host", "127.0.0.1", "--port", "0"}
	if cfg.validation {
		args = append(args, "--validate-doc-update")
	}
	cmd := exec.Command(node, args...)
	cmd.Dir = dir
	logs := &tailBuffer{max: 16 << 10}
	cmd.Stderr = logs
	stdin, err := cmd.StdinPipe() // the server exits when this closes
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start node %s: %w", filepath.Join(dir, "server.js"), err)
	}
	s := &pouchServer{cmd: cmd, stdin: stdin, logs: logs, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		close(s.done)
	}()

	lines := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		first := true
		for sc.Scan() {
			if first {
				lines <- sc.Text()
				first = false
				continue
			}
			logs.Write(append(sc.Bytes(), '\n'))
		}
		if first {
			close(lines)
		}
	}()

	const prefix = "couchtest listening on "
	select {
	case line, ok := <-lines:
		if !ok || !strings.HasPrefix(line, prefix) {
			s.Close()
			return nil, fmt.Errorf("CouchDB test server did not start (first line %q); its output:\n%s", line, logs)
		}
		s.url = strings.TrimPrefix(line, prefix)
	case <-s.done:
		return nil, fmt.Errorf("CouchDB test server exited at start (%v); its output:\n%s", cmd.ProcessState, logs)
	case <-ctx.Done():
		s.Close()
		return nil, fmt.Errorf("CouchDB test server did not report its port: %w; its output:\n%s", ctx.Err(), logs)
	}
	if err := waitReady(ctx, http.DefaultClient, s.url, 30*time.Second); err != nil {
		s.Close()
		return nil, fmt.Errorf("CouchDB test server at %s not ready: %w; its output:\n%s", s.url, err, logs)
	}
	return s, nil
}

// Close stops the server and waits for the process to exit.
func (s *pouchServer) Close() {
	s.once.Do(func() {
		_ = s.stdin.Close()
		select {
		case <-s.done:
		case <-time.After(5 * time.Second):
			_ = s.cmd.Process.Kill()
			<-s.done
		}
	})
}

// waitReady polls GET / until the server answers 200. (PouchDB answers 404
// on /_up, so that endpoint cannot be the probe.)
func waitReady(ctx context.Context, c *http.Client, base string, within time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, within)
	defer cancel()
	var last error
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/", nil)
		if err != nil {
			return err
		}
		resp, err := c.Do(req)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("GET / answered %s", resp.Status)
		}
		last = err
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last: %v)", ctx.Err(), last)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// serverDir is internal/couchtest/server in the source tree.
func serverDir() (string, error) {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return "", errors.New("cannot locate the couchtest sources")
	}
	dir := filepath.Join(filepath.Dir(file), "server")
	if _, err := os.Stat(filepath.Join(dir, "server.js")); err != nil {
		return "", fmt.Errorf("CouchDB test server script missing: %w", err)
	}
	return dir, nil
}

// ensureModules runs "npm ci" in dir unless node_modules is up to date with
// package-lock.json. A file lock keeps test binaries running in parallel
// from installing at the same time.
func ensureModules(ctx context.Context, dir string) error {
	unlock, err := filelock.Lock(filepath.Join(dir, ".npm-install.lock"))
	if err != nil {
		return fmt.Errorf("lock the test server's node_modules: %w", err)
	}
	defer unlock()
	if modulesCurrent(dir) {
		return nil
	}
	npm, err := exec.LookPath("npm")
	if err != nil {
		return errors.New("npm is not installed (need it once to install the CouchDB test server's modules; or set " + EnvURL + " to a CouchDB server)")
	}
	cmd := exec.CommandContext(ctx, npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund", "--loglevel=error")
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("npm ci in %s failed: %w\n%s", dir, err, out)
	}
	if !modulesCurrent(dir) {
		return fmt.Errorf("npm ci in %s left node_modules incomplete:\n%s", dir, out)
	}
	return nil
}

// modulesCurrent reports whether npm finished installing (it writes
// node_modules/.package-lock.json last) from the current lockfile.
func modulesCurrent(dir string) bool {
	hidden, err := os.Stat(filepath.Join(dir, "node_modules", ".package-lock.json"))
	if err != nil {
		return false
	}
	lock, err := os.Stat(filepath.Join(dir, "package-lock.json"))
	if err != nil {
		return false
	}
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "express-pouchdb", "package.json")); err != nil {
		return false
	}
	return !lock.ModTime().After(hidden.ModTime())
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	buf bytes.Buffer
}

func (b *tailBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf.Write(p)
	if over := b.buf.Len() - b.max; over > 0 {
		b.buf.Next(over)
	}
	return len(p), nil
}

func (b *tailBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
