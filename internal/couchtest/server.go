package couchtest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"

	"github.com/go-whisk/activationstore/internal/childproc"
)

// Kind says what serves the CouchDB protocol to the tests.
type Kind string

const (
	// Single is a real Apache CouchDB node (single_node = true).
	Single Kind = "single"
	// Cluster is a real Apache CouchDB cluster of three nodes on
	// 127.0.0.1 (n = 3, q = 2).
	Cluster Kind = "cluster"
	// PouchDB is the fallback test server: PouchDB in memory behind
	// express-pouchdb, run by node.
	PouchDB Kind = "pouchdb"
	// External is the server COUCHDB_URL names.
	External Kind = "external"
)

// Server is a test server this package started: a real CouchDB (one node
// or a cluster) or the PouchDB fallback. Its data is lost when it stops.
type Server struct {
	kind  Kind
	urls  []string
	pouch *pouchServer
	couch *couchServer
}

// Option configures a server of Start or StartCluster.
type Option func(*serverConfig)

type serverConfig struct {
	validation bool
}

// WithValidation makes the PouchDB fallback run design documents'
// validate_doc_update functions, as CouchDB does, so that a test can have
// documents refused. CouchDB always runs them; the PouchDB server does not
// by default (and not on the shared server): it reads the design documents
// on every write, which slows _bulk_docs by half.
func WithValidation() Option { return func(c *serverConfig) { c.validation = true } }

// Start starts a test server of its own, of the kind [Selected] gives (a real
// CouchDB single node when a release is found, a 3-node cluster under
// COUCHTEST=cluster, PouchDB otherwise), on 127.0.0.1 and free ports; the
// caller must Close it. Most tests share one through [URL] instead; Start
// is for tests that stop a server on purpose or need an option. ctx bounds
// the start-up only.
func Start(ctx context.Context, opts ...Option) (*Server, error) {
	kind, err := startKind()
	if err != nil {
		return nil, err
	}
	return startKindOf(ctx, kind, opts...)
}

// StartSingle starts a real CouchDB single node of its own from the
// release; it fails when there is no release (see [EnvRelease]).
func StartSingle(ctx context.Context, opts ...Option) (*Server, error) {
	return startKindOf(ctx, Single, opts...)
}

// StartCluster starts a real 3-node CouchDB cluster of its own (n = 3,
// q = 2, every node on 127.0.0.1 with its own Erlang node name, HTTP port
// and data folder); it fails when there is no release (see [EnvRelease]).
// Tests that stop nodes (Stop, Kill, Restart) start one of their own.
func StartCluster(ctx context.Context, opts ...Option) (*Server, error) {
	return startKindOf(ctx, Cluster, opts...)
}

func startKindOf(ctx context.Context, kind Kind, opts ...Option) (*Server, error) {
	var cfg serverConfig
	for _, o := range opts {
		o(&cfg)
	}
	switch kind {
	case PouchDB:
		p, err := startPouch(ctx, cfg)
		if err != nil {
			return nil, err
		}
		return &Server{kind: PouchDB, urls: []string{p.url}, pouch: p}, nil
	case Single, Cluster:
		n := 1
		if kind == Cluster {
			n = 3
		}
		c, err := startCouch(ctx, n)
		if err != nil {
			return nil, err
		}
		s := &Server{kind: kind, couch: c}
		for _, nd := range c.nodes {
			s.urls = append(s.urls, nd.url())
		}
		return s, nil
	}
	return nil, fmt.Errorf("couchtest: cannot start a server of kind %q", kind)
}

// Kind says what the server is: Single, Cluster or PouchDB.
func (s *Server) Kind() Kind { return s.kind }

// URL is the base URL of the server (of node 0 of a cluster), without a
// trailing slash; for a real CouchDB it carries the admin's credentials,
// "http://admin:password@127.0.0.1:port".
func (s *Server) URL() string { return s.urls[0] }

// URLs are the base URLs of every node, node 0 first.
func (s *Server) URLs() []string { return append([]string(nil), s.urls...) }

// Nodes is the number of nodes (1 but for a cluster).
func (s *Server) Nodes() int { return len(s.urls) }

// Startup is how long the server took to start (to answer /_up on every
// node and, for a cluster, to list every node as a member); 0 for PouchDB.
func (s *Server) Startup() time.Duration {
	if s.couch == nil {
		return 0
	}
	return s.couch.startup
}

// Logs names the log file of each node (empty for PouchDB). They are
// removed by Close unless the server was closed with KeepFiles.
func (s *Server) Logs() string {
	if s.couch == nil {
		return ""
	}
	return s.couch.logs()
}

// RSS is the resident memory of the server's processes (every node),
// Linux only.
func (s *Server) RSS() (int64, error) { return sumOverNodes(s, childproc.RSS) }

// CPUTime is the CPU time (user and system) the server's processes have
// used so far: every node's VM and its children, among them the couchjs
// processes that build view indexes in the background. Linux only.
//
// Benchmarks take it before and after a phase to tell the server's work
// from the client's: on 2 cores they compete for the same CPU.
func (s *Server) CPUTime() (time.Duration, error) { return sumOverNodes(s, childproc.CPUTime) }

// sumOverNodes adds f(pid) up over the server's running processes: every
// node's VM, or the PouchDB server.
func sumOverNodes[T int64 | time.Duration](s *Server, f func(pid int) (T, error)) (T, error) {
	if s.couch == nil {
		if s.pouch == nil || s.pouch.cmd.Process == nil {
			return 0, errors.New("couchtest: not running")
		}
		return f(s.pouch.cmd.Process.Pid)
	}
	var sum T
	for _, nd := range s.couch.nodes {
		if pid := nd.proc.Pid(); pid != 0 {
			n, err := f(pid)
			if err != nil {
				return 0, err
			}
			sum += n
		}
	}
	return sum, nil
}

var errNotCouch = errors.New("couchtest: only a real CouchDB started by this package has nodes to stop")

func (s *Server) node(i int) (*couchNode, error) {
	if s.couch == nil {
		return nil, errNotCouch
	}
	if i < 0 || i >= len(s.couch.nodes) {
		return nil, fmt.Errorf("couchtest: node %d: the server has nodes 0 to %d", i, len(s.couch.nodes)-1)
	}
	return s.couch.nodes[i], nil
}

// Stop stops node i as an operator would (SIGTERM; SIGKILL after 15 s).
// Its data folder, name and port are kept for Restart.
func (s *Server) Stop(i int) error {
	nd, err := s.node(i)
	if err != nil {
		return err
	}
	nd.proc.Signal(syscall.SIGTERM, 15*time.Second)
	return nil
}

// Kill kills node i with SIGKILL, as a crash or power loss would.
func (s *Server) Kill(i int) error {
	nd, err := s.node(i)
	if err != nil {
		return err
	}
	nd.proc.Kill()
	return nil
}

// Restart starts node i again after Stop or Kill, on the same port and data
// folder, and returns once it answers /_up and, in a cluster, it and every
// running node see each other connected.
func (s *Server) Restart(ctx context.Context, i int) error {
	nd, err := s.node(i)
	if err != nil {
		return err
	}
	if err := nd.proc.Start(); err != nil {
		return err
	}
	if err := nd.waitUp(ctx, 2*time.Minute); err != nil {
		return err
	}
	if len(s.couch.nodes) > 1 {
		return s.couch.waitMembers(ctx, 2*time.Minute)
	}
	return nil
}

// Running reports whether node i's process is alive (false after Stop or
// Kill, and for the PouchDB server).
func (s *Server) Running(i int) bool {
	nd, err := s.node(i)
	return err == nil && nd.proc.Running()
}

// PID is node i's process id, 0 when it is not running.
func (s *Server) PID(i int) int {
	nd, err := s.node(i)
	if err != nil {
		return 0
	}
	return nd.proc.Pid()
}

// Close stops the server, waits for its processes to exit and removes its
// files.
func (s *Server) Close() { s.close(false) }

// KeepFiles stops the server like Close but keeps its configuration, data
// and logs, and prints where they are: for a test that failed.
func (s *Server) KeepFiles() {
	s.close(true)
	if s.couch != nil {
		fmt.Fprintf(os.Stderr, "couchtest: the %s CouchDB's files are kept in %s\n", s.kind, s.couch.dir)
	}
}

func (s *Server) close(keep bool) {
	if s.pouch != nil {
		s.pouch.Close()
	}
	if s.couch != nil {
		s.couch.close(keep)
	}
}
