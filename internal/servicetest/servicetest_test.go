package servicetest_test

import (
	"strings"
	"testing"
	"time"

	"github.com/go-whisk/activationstore/internal/servicetest"
)

// A shell stands in for the service here: the runner's own behaviour is
// what is under test; examples/persister, losstest and hardeningtest run
// it on the real service.
const sh = "/bin/sh"

func TestStartReadsAddressAndKeepsBothStreams(t *testing.T) {
	script := `echo out1; echo err1 >&2; printf '%0300000d\n' 0 >&2
echo '{"level":"INFO","msg":"persister started","listen":"127.0.0.1:9"}' >&2
trap 'echo stopping; exit 0' TERM; while :; do sleep 0.05; done`
	svc := servicetest.Start(t, sh, nil, "-c", script)
	if got := svc.Addr(); got != "127.0.0.1:9" {
		t.Errorf("Addr() = %q, want 127.0.0.1:9", got)
	}
	lines := svc.Lines()
	if len(lines) != 4 || lines[0] != "out1" || lines[1] != "err1" || len(lines[2]) != 300_000 {
		t.Errorf("lines: got %d (first %q), want out1, err1, a 300000-byte line, the start line", len(lines), lines[:min(2, len(lines))])
	}
	if err := svc.Terminate(t, 10*time.Second); err != nil {
		t.Errorf("Terminate: %v, want exit 0", err)
	}
	if !strings.HasSuffix(svc.Logs(), "stopping") {
		t.Errorf("the lines written while stopping are kept: %q", svc.Tail(1))
	}
}

func TestRunWaitReportsExit(t *testing.T) {
	svc := servicetest.Run(t, sh, []string{"SERVICETEST_X=42"}, "-c", `echo "x=$SERVICETEST_X"; exit 3`)
	exited, err := svc.Wait(10 * time.Second)
	if !exited || err == nil || !strings.Contains(err.Error(), "exit status 3") {
		t.Errorf("Wait = %v, %v; want exited with status 3", exited, err)
	}
	if svc.Logs() != "x=42" {
		t.Errorf("Logs() = %q, want x=42 (env is added to the environment)", svc.Logs())
	}
	if svc.Addr() != "" {
		t.Errorf("Addr() = %q for a process that never logged one", svc.Addr())
	}
}

func TestKill(t *testing.T) {
	svc := servicetest.Run(t, sh, nil, "-c", `trap '' TERM; while :; do sleep 0.05; done`)
	if exited, _ := svc.Wait(100 * time.Millisecond); exited {
		t.Fatal("the process exited on its own")
	}
	svc.Kill(t)
	if exited, err := svc.Wait(time.Second); !exited || err == nil || !strings.Contains(err.Error(), "killed") {
		t.Errorf("after Kill: exited %v, %v; want killed", exited, err)
	}
}
