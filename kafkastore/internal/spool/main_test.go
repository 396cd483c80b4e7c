package spool

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
)

// Some tests re-execute the test binary as a child that plays one part
// (another process opening the spool, a process in its own mount
// namespace with a small tmpfs); childEnv names the part.
const (
	childEnv    = "SPOOL_TEST_CHILD"
	childDirEnv = "SPOOL_TEST_CHILD_DIR"
	childPIDEnv = "SPOOL_TEST_CHILD_HOLDER"
)

func TestMain(m *testing.M) {
	if part := os.Getenv(childEnv); part != "" {
		if err := runChild(part, os.Getenv(childDirEnv)); err != nil {
			fmt.Printf("child %s: FAIL: %v\n", part, err)
			os.Exit(1)
		}
		fmt.Printf("child %s: ok\n", part)
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func runChild(part, dir string) error {
	switch part {
	case "locked":
		_, err := Open(dir, Options{})
		if !errors.Is(err, ErrLocked) {
			return fmt.Errorf("Open of a directory another process holds: %v, want ErrLocked", err)
		}
		if holder := os.Getenv(childPIDEnv); !strings.Contains(err.Error(), dir) || !strings.Contains(err.Error(), "pid "+holder) {
			return fmt.Errorf("the error %q should name %s and the holder pid %s", err, dir, holder)
		}
		fmt.Println(err)
		return nil
	case "free":
		s, err := Open(dir, Options{})
		if err != nil {
			return fmt.Errorf("Open after the other process closed: %v", err)
		}
		return s.Close()
	case "diskfull":
		return diskFullChild(dir)
	}
	return fmt.Errorf("unknown part %q", part)
}

// child runs this test binary as part with dir.
func child(part, dir string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+part, childDirEnv+"="+dir, childPIDEnv+"="+strconv.Itoa(os.Getpid()))
	return cmd
}

func TestSecondOpenFromAnotherProcessIsLocked(t *testing.T) {
	dir := t.TempDir()
	s := mustOpen(t, dir, Options{})
	out, err := child("locked", dir).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "child locked: ok") {
		t.Fatalf("child: %v\n%s", err, out)
	}
	t.Logf("the other process got: %s", strings.SplitN(string(out), "\n", 2)[0])
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	out, err = child("free", dir).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "child free: ok") {
		t.Fatalf("child after Close: %v\n%s", err, out)
	}
}
