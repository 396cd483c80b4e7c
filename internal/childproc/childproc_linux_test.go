package childproc

import (
	"os/exec"
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
