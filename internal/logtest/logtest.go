// Package logtest collects what components log while a test runs, for its
// assertions and for the report when it fails.
package logtest

import (
	"bytes"
	"strings"
	"sync"
)

// Max is how much a Buffer keeps: a test that logs more keeps its first
// Max bytes, so a long run at debug level cannot exhaust memory.
const Max = 8 << 20

// Buffer is an io.Writer for log handlers that any number of goroutines
// write to while the test reads it. The zero value is ready to use.
type Buffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

// Write keeps p while the buffer holds less than Max bytes, and always
// reports success so that the logger never fails.
func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.buf.Len() < Max {
		b.buf.Write(p)
	}
	return len(p), nil
}

// String returns everything kept.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// Lines counts the complete lines kept.
func (b *Buffer) Lines() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return bytes.Count(b.buf.Bytes(), []byte("\n"))
}

// Tail returns the last n lines kept.
func (b *Buffer) Tail(n int) string {
	lines := strings.Split(strings.TrimRight(b.String(), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
