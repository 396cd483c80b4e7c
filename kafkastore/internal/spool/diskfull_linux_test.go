package spool

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestDiskFullENOSPC runs out of real disk space: a child process in its
// own user and mount namespace (no privilege needed) mounts a 2 MiB tmpfs,
// fills it, and checks that the spool reports ENOSPC as a typed error,
// loses nothing acknowledged, and resumes once space is freed.
func TestDiskFullENOSPC(t *testing.T) {
	cmd := child("diskfull", t.TempDir())
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags:  syscall.CLONE_NEWUSER | syscall.CLONE_NEWNS,
		UidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getuid(), Size: 1}},
		GidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getgid(), Size: 1}},
	}
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		t.Fatalf("cannot start a child in a new user and mount namespace, which this test needs to mount a small tmpfs: %v "+
			"(enable unprivileged user namespaces: sysctl user.max_user_namespaces=15000, kernel.unprivileged_userns_clone=1, "+
			"kernel.apparmor_restrict_unprivileged_userns=0)", err)
	}
	if err != nil || !strings.Contains(string(out), "child diskfull: ok") {
		t.Fatalf("child: %v\n%s", err, out)
	}
	t.Logf("%s", out)
}

func diskFullChild(dir string) error {
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("make the mounts private: %w", err)
	}
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size=2m"); err != nil {
		return fmt.Errorf("mount a tmpfs (the user namespace should allow it): %w", err)
	}
	defer unix.Unmount(dir, 0)
	sdir := filepath.Join(dir, "spool")
	o := Options{MaxBytes: 64 << 20, SegmentBytes: 256 << 10, CursorInterval: 10 * time.Millisecond}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := Open(sdir, o)
	if err != nil {
		return err
	}
	defer s.Close()
	var ok []string
	payload := func(i int) []byte { return fmt.Appendf(nil, "record %05d %04000d", i, i) }
	if err := s.Append(ctx, payload(0)); err != nil {
		return err
	}
	ok = append(ok, string(payload(0)))

	filler := filepath.Join(dir, "filler")
	f, err := os.Create(filler)
	if err != nil {
		return err
	}
	chunk := make([]byte, 64<<10)
	for {
		if _, err = f.Write(chunk); err != nil {
			break
		}
	}
	_ = f.Close()
	if !errors.Is(err, syscall.ENOSPC) {
		return fmt.Errorf("filling the tmpfs: %v, want ENOSPC", err)
	}

	// Fill the first segment; the next one cannot be preallocated.
	var full error
	i := 1
	for ; i < 1000; i++ {
		if err := s.Append(ctx, payload(i)); err != nil {
			full = err
			break
		}
		ok = append(ok, string(payload(i)))
	}
	var we *WriteError
	if !errors.As(full, &we) || !we.DiskFull() || !errors.Is(full, syscall.ENOSPC) {
		return fmt.Errorf("Append on a full disk: %v, want a *WriteError with DiskFull() and errors.Is ENOSPC", full)
	}
	fmt.Printf("after %d records: %v\n", len(ok), full)
	if err := s.Append(ctx, payload(i)); !errors.As(err, &we) || !we.DiskFull() {
		return fmt.Errorf("the next Append, still full: %v, want DiskFull", err)
	}
	st := s.Stats()
	if st.WriteErrors < 2 || st.DiskError == nil {
		return fmt.Errorf("stats while full: %+v, want write errors and a DiskError", st)
	}

	if err := os.Remove(filler); err != nil {
		return err
	}
	for j := range 100 {
		p := payload(i + 1 + j)
		if err := s.Append(ctx, p); err != nil {
			return fmt.Errorf("Append after space was freed: %v", err)
		}
		ok = append(ok, string(p))
	}
	if st := s.Stats(); st.DiskError != nil {
		return fmt.Errorf("DiskError %v after later groups succeeded", st.DiskError)
	}
	if err := s.Close(); err != nil {
		return err
	}
	s, err = Open(sdir, o)
	if err != nil {
		return err
	}
	recs := readAvailable(s)
	if len(recs) != len(ok) {
		return fmt.Errorf("after reopening: %d records, want the %d whose Append returned nil", len(recs), len(ok))
	}
	for k, r := range recs {
		if string(r.Payload) != ok[k] {
			return fmt.Errorf("record %d after reopening: %.12q, want %.12q", k, r.Payload, ok[k])
		}
	}
	fmt.Printf("%d records whole after reopening\n", len(recs))
	return s.Close()
}
