package logtest

import (
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
)

func TestBufferKeepsConcurrentLinesWhole(t *testing.T) {
	var b Buffer
	log := slog.New(slog.NewTextHandler(&b, nil))
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 100 {
				log.Info("line", "g", g, "i", i)
			}
		})
	}
	wg.Wait()
	if got := b.Lines(); got != 800 {
		t.Fatalf("Lines() = %d, want 800", got)
	}
	for _, l := range strings.Split(strings.TrimSpace(b.String()), "\n") {
		if !strings.Contains(l, "msg=line") || !strings.Contains(l, " i=") {
			t.Fatalf("a line was torn: %q", l)
		}
	}
}

func TestBufferTailAndCap(t *testing.T) {
	var b Buffer
	for i := range 5 {
		fmt.Fprintf(&b, "line %d\n", i)
	}
	if got, want := b.Tail(2), "line 3\nline 4"; got != want {
		t.Errorf("Tail(2) = %q, want %q", got, want)
	}
	if got := b.Tail(10); !strings.HasPrefix(got, "line 0\n") {
		t.Errorf("Tail(10) of 5 lines = %q, want them all", got)
	}
	big := strings.Repeat("x", Max)
	if n, err := b.Write([]byte(big)); n != Max || err != nil {
		t.Fatalf("Write = %d, %v; want every byte reported written", n, err)
	}
	if n, err := b.Write([]byte("dropped\n")); n != 8 || err != nil {
		t.Fatalf("Write past Max = %d, %v; want success", n, err)
	}
	if strings.Contains(b.String(), "dropped") {
		t.Error("a write past Max was kept")
	}
}
