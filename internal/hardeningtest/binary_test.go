package hardeningtest

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/go-whisk/activationstore/codec"
	"github.com/go-whisk/activationstore/internal/couchtest"
	"github.com/go-whisk/activationstore/internal/kafkatest"
)

// buildPersister builds the persister service into a temporary directory.
func buildPersister(t *testing.T) string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go command is needed to build examples/persister: %v", err)
	}
	bin := filepath.Join(t.TempDir(), "persister")
	cmd := exec.Command(goBin, "build", "-o", bin, "github.com/go-whisk/activationstore/examples/persister")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build examples/persister: %v\n%s", err, out)
	}
	return bin
}

// service is a running persister binary.
type service struct {
	cmd    *exec.Cmd
	stderr logBuffer // stdout too
	exited chan struct{}
	err    error // of Wait, once exited is closed
}

// startService runs the persister binary. The process is killed when the
// test ends if still running.
func startService(t *testing.T, bin string, args ...string) *service {
	t.Helper()
	s := &service{cmd: exec.Command(bin, args...), exited: make(chan struct{})}
	s.cmd.Stderr = &s.stderr
	s.cmd.Stdout = &s.stderr
	if err := s.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", bin, err)
	}
	go func() {
		s.err = s.cmd.Wait()
		close(s.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-s.exited:
		default:
			_ = s.cmd.Process.Kill()
			<-s.exited
		}
	})
	return s
}

// wait returns the exit error, or false when the process is still running
// after d.
func (s *service) wait(d time.Duration) (error, bool) {
	select {
	case <-s.exited:
		return s.err, true
	case <-time.After(d):
		return nil, false
	}
}

// The persister service never prints the CouchDB password: not when
// CouchDB is down at start, not when it fails mid-run.
func TestPersisterServiceHidesCouchPassword(t *testing.T) {
	buildStart := time.Now()
	bin := buildPersister(t)
	buildTime := time.Since(buildStart)
	var summary []string

	t.Run("CouchDB down at start", func(t *testing.T) {
		couchURL, proxy, secrets := couchCredentials(t)
		scan := &leakScan{secrets: secrets}
		proxy.Drop()
		start := time.Now()
		svc := startService(t, bin, "-couchdb", couchURL, "-brokers", closedPort(t),
			"-db", couchtest.DBName(t), "-listen", "127.0.0.1:0", "-log-level", "debug")
		err, exited := svc.wait(30 * time.Second)
		switch {
		case !exited:
			t.Fatalf("the service neither started nor exited within 30s with CouchDB down; stderr:\n%s", &svc.stderr)
		case err == nil:
			t.Errorf("the service exited 0 with CouchDB down; stderr:\n%s", &svc.stderr)
		}
		out := svc.stderr.String()
		dumpOnRequest(t, out)
		scan.check(t, "service stderr", out)
		if !strings.Contains(out, "persister:") || !strings.Contains(out, proxy.Addr()) {
			t.Errorf("stderr does not explain the failure (want the server's address): %q", out)
		}
		summary = append(summary, "down at start: exit after "+time.Since(start).Round(time.Millisecond).String()+", stderr "+itoa(len(out))+" bytes clean")
	})

	t.Run("CouchDB fails mid-run", func(t *testing.T) {
		couchURL, proxy, secrets := couchCredentials(t)
		scan := &leakScan{secrets: secrets}
		b := kafkatest.Start(t)
		topic := kafkatest.Topic(t, "completed-service")
		b.CreateTopic(t, topic, 1, nil)
		base, db := couchtest.URL(t), couchtest.DBName(t)
		svc := startService(t, bin, "-couchdb", couchURL, "-brokers", b.Addr(), "-db", db,
			"-listen", "127.0.0.1:0", "-log-level", "debug",
			"-topic-pattern", "^"+topic+"$", "-group-id", kafkatest.Topic(t, "group"),
			"-dead-letter-topic", kafkatest.Topic(t, "dlq"),
			"-session-timeout", "3s", "-heartbeat", "100ms", "-batch-wait", "5ms")
		stderr := &svc.stderr

		persisted := func(id string) bool {
			status, _, err := couchtest.Do(ctxFor(t, 10*time.Second), http.MethodGet, base,
				"/"+url.PathEscape(db)+"/"+url.PathEscape("guest/"+id), nil)
			return err == nil && status == http.StatusOK
		}
		publish := func() string {
			a := validActivation("guest")
			v, err := codec.MarshalResultMessage(codec.TransactionID{ID: "tid-service", Start: a.Start}, a)
			if err != nil {
				t.Fatal(err)
			}
			produceValues(t, b.Addr(), topic, [][]byte{v})
			return a.ActivationID
		}
		first := publish()
		waitUntilOr(t, 30*time.Second, "the service to persist a record", stderr, func() bool { return persisted(first) })

		proxy.Drop()
		second := publish()
		waitUntilOr(t, 15*time.Second, "the service to log a failed write", stderr, func() bool {
			return strings.Contains(stderr.String(), "write to the primary failed")
		})
		// The HTTP endpoints must not show the password either.
		var bodies []string
		if addr := listenAddr(stderr.String()); addr != "" {
			for _, path := range []string{"/ready", "/metrics"} {
				if resp, err := http.Get("http://" + addr + path); err == nil {
					body, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					bodies = append(bodies, string(body))
					scan.check(t, "GET "+path, string(body))
				}
			}
		} else {
			t.Errorf("no listen address in the service's log")
		}
		if err := proxy.Restore(); err != nil {
			t.Fatal(err)
		}
		waitUntilOr(t, 30*time.Second, "the record published while CouchDB was down to be persisted", stderr, func() bool { return persisted(second) })

		if err := svc.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		err, exited := svc.wait(15 * time.Second)
		switch {
		case !exited:
			t.Fatalf("the service did not stop within 15s of SIGTERM")
		case err != nil:
			t.Errorf("the service exited with %v after SIGTERM", err)
		}
		out := svc.stderr.String()
		dumpOnRequest(t, out)
		lines := strings.Split(strings.TrimSpace(out), "\n")
		for i, line := range lines {
			scan.check(t, "service stderr line "+itoa(i+1), line)
		}
		if !strings.Contains(out, `"level":"DEBUG"`) {
			t.Errorf("the service logged nothing at debug level; the scan proves less than it should")
		}
		summary = append(summary, "fails mid-run: "+itoa(len(lines))+" stderr lines and "+itoa(len(bodies))+" HTTP bodies clean, record persisted after CouchDB came back")
	})
	t.Logf("SUMMARY TestPersisterServiceHidesCouchPassword: build %v; %s", buildTime.Round(time.Millisecond), strings.Join(summary, "; "))
}

func itoa(n int) string { return strconv.Itoa(n) }

// listenAddr finds the address the service logged at start.
func listenAddr(log string) string {
	for _, line := range strings.Split(log, "\n") {
		var rec struct {
			Msg    string `json:"msg"`
			Listen string `json:"listen"`
		}
		if json.Unmarshal([]byte(line), &rec) == nil && rec.Listen != "" {
			return rec.Listen
		}
	}
	return ""
}

// waitUntilOr is waitUntil that shows the service's log on failure.
func waitUntilOr(t *testing.T, d time.Duration, what string, log *logBuffer, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s; service log:\n%s", d, what, log)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// dumpOnRequest logs text when HARDENING_DUMP is set, to inspect by eye what
// the scans checked.
func dumpOnRequest(t *testing.T, text string) {
	if os.Getenv("HARDENING_DUMP") != "" {
		t.Logf("output:\n%s", text)
	}
}
