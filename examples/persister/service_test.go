package main_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/go-whisk/activationstore/codec"
	"github.com/go-whisk/activationstore/internal/couchtest"
	"github.com/go-whisk/activationstore/internal/kafkatest"
	"github.com/go-whisk/activationstore/primary/couchdb"
	"github.com/go-whisk/activationstore/store"
)

// TestMain stops the shared test servers (CouchDB, and Apache Kafka under
// KAFKATEST=apache) with the test binary.
func TestMain(m *testing.M) {
	code := m.Run()
	kafkatest.Stop()
	couchtest.Stop()
	os.Exit(code)
}

var (
	buildOnce sync.Once
	binary    string
	buildErr  error
)

// build compiles the service once per test binary.
func build(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "persister-bin")
		if err != nil {
			buildErr = err
			return
		}
		binary = filepath.Join(dir, "persister")
		out, err := exec.Command("go", "build", "-race", "-o", binary, ".").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	require.NoError(t, buildErr, "building the persister service")
	return binary
}

// service is a running persister process.
type service struct {
	cmd    *exec.Cmd
	addr   string
	mu     sync.Mutex
	logs   []string
	exited chan error
}

func (s *service) lines() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.logs...)
}

// start runs the service with args and environment env, and waits for it
// to log its listen address.
func start(t *testing.T, env []string, args ...string) *service {
	t.Helper()
	cmd := exec.Command(build(t), args...)
	cmd.Env = append(os.Environ(), env...)
	stderr, err := cmd.StderrPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	s := &service{cmd: cmd, exited: make(chan error, 1)}
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
			if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == "persister started" {
				addr <- rec.Listen
			}
		}
		s.exited <- cmd.Wait()
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
	})
	select {
	case s.addr = <-addr:
	case err := <-s.exited:
		t.Fatalf("the service exited before listening: %v\n%s", err, strings.Join(s.lines(), "\n"))
	case <-time.After(60 * time.Second):
		t.Fatalf("the service did not start within 60 s:\n%s", strings.Join(s.lines(), "\n"))
	}
	return s
}

func (s *service) get(t *testing.T, path string) (int, string) {
	t.Helper()
	resp, err := http.Get("http://" + s.addr + path)
	require.NoError(t, err, "GET %s", path)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(body)
}

// eventually polls cond every 100 ms for up to d.
func eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func activation(i int) *store.Activation {
	start := time.UnixMilli(1_700_000_000_000 + int64(i))
	return &store.Activation{
		Namespace: "guest", Name: "svc", Subject: "guest-subject", ActivationID: fmt.Sprintf("%032x", i+1),
		Start: start, End: start.Add(time.Millisecond), Version: store.DefaultVersion,
		Response: store.Response{StatusCode: store.StatusSuccess, Result: json.RawMessage(`{"i":` + fmt.Sprint(i) + `}`)},
	}
}

func TestServiceEndpointsAndGracefulStop(t *testing.T) {
	broker := kafkatest.Start(t)
	topic := kafkatest.Topic(t, "completed")
	broker.CreateTopic(t, topic, 2, nil)
	couchURL, db := couchtest.URL(t), couchtest.DBName(t)

	svc := start(t, []string{"PERSISTER_BROKERS=" + broker.Addr(), "COUCHDB_URL=" + couchURL},
		"-db", db, "-listen", "127.0.0.1:0", "-group-id", "svc-"+db, "-client-id", "svc-test",
		"-session-timeout", "6s", "-heartbeat", "500ms", "-batch-wait", "10ms")

	code, body := svc.get(t, "/ping")
	assert.Equal(t, http.StatusOK, code)
	assert.Equal(t, "pong", body)
	eventually(t, 30*time.Second, "/ready to answer 200", func() bool {
		code, _ := svc.get(t, "/ready")
		return code == http.StatusOK
	})

	const n = 50
	w := &kafka.Writer{Addr: kafka.TCP(broker.Addr()), Topic: topic, BatchTimeout: time.Millisecond, RequiredAcks: kafka.RequireAll}
	defer w.Close()
	msgs := make([]kafka.Message, n)
	for i := range msgs {
		v, err := codec.MarshalResultMessage(codec.TransactionID{ID: "sid_test", Start: time.Now()}, activation(i))
		require.NoError(t, err)
		msgs[i] = kafka.Message{Key: []byte(fmt.Sprint(i)), Value: v}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	require.NoError(t, w.WriteMessages(ctx, msgs...))

	eventually(t, 30*time.Second, "50 activations persisted per /metrics", func() bool {
		_, metrics := svc.get(t, "/metrics")
		return strings.Contains(metrics, "activation_persister_persisted_total 50")
	})
	_, metrics := svc.get(t, "/metrics")
	for _, want := range []string{
		"activation_persister_conflicts_total 0", "activation_persister_retries_total",
		"activation_persister_dead_lettered_total 0", "activation_persister_batch_seconds_total",
		"activation_persister_ready 1", `activation_persister_lag{partition="0",topic="` + topic + `"}`,
	} {
		assert.Contains(t, metrics, want)
	}

	primary, err := couchdb.New(ctx, couchURL, db)
	require.NoError(t, err)
	defer primary.Close()
	count, err := primary.Count(ctx, store.Query{Namespace: "guest"}, store.UserContext{})
	require.NoError(t, err)
	assert.Equal(t, n, count, "every published activation is in CouchDB")

	require.NoError(t, svc.cmd.Process.Signal(syscall.SIGTERM))
	select {
	case err := <-svc.exited:
		require.NoError(t, err, "SIGTERM drains and exits 0")
	case <-time.After(30 * time.Second):
		t.Fatal("the service did not exit within 30 s of SIGTERM")
	}
	for _, line := range svc.lines() {
		var rec map[string]any
		require.NoError(t, json.Unmarshal([]byte(line), &rec), "every log line is JSON: %s", line)
		assert.NotContains(t, line, "secret", "no credential in logs")
	}
}

func TestServiceRejectsMissingSettings(t *testing.T) {
	cmd := exec.Command(build(t))
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	out, err := cmd.CombinedOutput()
	require.Error(t, err, "the service must not start without brokers")
	assert.Contains(t, string(out), "PERSISTER_BROKERS")
}
