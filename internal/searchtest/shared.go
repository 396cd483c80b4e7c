package searchtest

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/go-whisk/activationstore/internal/childproc"
)

// shared holds the test binary's servers, one per version: a JVM starts in
// seconds, not milliseconds, so every Start of a version shares one.
var shared struct {
	mu      sync.Mutex
	stopped bool
	servers map[Version]*sharedEntry
	failed  childproc.FailedTests // keep their logs when one failed
}

type sharedEntry struct {
	once sync.Once
	c    *cluster
	s    *Server
	err  error
}

var errStopped = errors.New("searchtest: the shared servers were stopped (Stop or Main ran)")

func sharedServer(v Version) (*Server, error) {
	shared.mu.Lock()
	if shared.stopped {
		shared.mu.Unlock()
		return nil, errStopped
	}
	if shared.servers == nil {
		shared.servers = map[Version]*sharedEntry{}
	}
	e := shared.servers[v]
	if e == nil {
		e = &sharedEntry{}
		shared.servers[v] = e
	}
	shared.mu.Unlock()
	e.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		e.c, e.err = startCluster(ctx, spec{version: v, nodes: 1, heap: heap()})
		if e.err != nil {
			return
		}
		e.s = nodeServer(e.c.nodes[0])
		fmt.Fprintf(os.Stderr, "searchtest: shared %s ready in %v (JVM CPU %v) at %s (RSS %d MiB; log: %s)\n",
			v, e.c.startup.Round(time.Millisecond), e.c.cpuTime().Round(10*time.Millisecond), e.s.url, e.s.RSS()>>20, e.c.logs())
	})
	return e.s, e.err
}

// nodeServer is the Server of one node started by this package.
func nodeServer(n *node) *Server {
	return &Server{url: n.url(), version: n.c.spec.version, node: n, client: &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()}}
}

// watchShared remembers t if it fails, so that Stop keeps the servers'
// logs.
func watchShared(t testing.TB) { shared.failed.Watch(t) }

// Main runs the tests and stops the shared servers, if any were started,
// before the test binary exits. Call it from TestMain:
//
//	func TestMain(m *testing.M) { searchtest.Main(m) }
//
// A package that also uses other harnesses calls m.Run, then Stop, itself.
func Main(m *testing.M) { childproc.RunThenStop(m, Stop) }

// Stop stops the shared servers and removes their files, unless a test
// using them failed: then their logs stay and their paths are printed.
// Later Starts in the same binary fail.
func Stop() {
	shared.mu.Lock()
	shared.stopped = true
	entries, failed := shared.servers, shared.failed.Names()
	shared.servers = nil
	shared.mu.Unlock()
	for _, e := range entries {
		e.once.Do(func() { e.err = errStopped }) // no start after this
		if e.c == nil {
			continue
		}
		e.c.close(len(failed) > 0)
		if len(failed) > 0 {
			fmt.Fprintf(os.Stderr, "searchtest: tests %v failed; the logs of the shared %s are kept: %s\n", failed, e.c.spec.version, e.c.logs())
		}
	}
}
