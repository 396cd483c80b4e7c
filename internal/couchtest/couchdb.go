package couchtest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-whisk/activationstore/internal/childproc"
)

// adminUser is the server admin of every CouchDB this package starts; the
// password is random per server and part of the URLs it hands out.
const adminUser = "admin"

// couchServer is a real Apache CouchDB started from a release: one node
// (single_node = true) or a cluster of nodes on 127.0.0.1 (n = 3, q = 2).
// The nodes share a private epmd (on a free port, so that no epmd outlives
// the tests and node names never clash with other test binaries'), a
// cookie, a chttpd_auth secret and an admin password.
type couchServer struct {
	release  string
	dir      string // config, data and logs of every node
	cookie   string
	secret   string
	uuid     string
	password string
	epmdPort int
	epmd     *childproc.Process
	nodes    []*couchNode
	startup  time.Duration
	http     *http.Client

	closeOnce sync.Once
}

// couchNode is one CouchDB node: an Erlang VM (beam.smp; the couchdb
// script exec's into it) with its own name, data folder and HTTP port,
// kept across restarts.
type couchNode struct {
	s    *couchServer
	id   int
	name string // Erlang node name, name@127.0.0.1
	dir  string
	port int
	proc childproc.Process
}

var nodeSeq atomic.Int64

// startCouch starts a CouchDB of n nodes from the release and returns once
// every node answers and, for a cluster, every node lists every other as a
// member.
func startCouch(ctx context.Context, n int) (s *couchServer, err error) {
	root, err := releaseRoot()
	if err != nil {
		return nil, err
	}
	kind := "single"
	if n > 1 {
		kind = "cluster"
	}
	dir, err := os.MkdirTemp("", "couchtest-"+kind+"-")
	if err != nil {
		return nil, err
	}
	s = &couchServer{
		release:  root,
		dir:      dir,
		cookie:   rand.Text(),
		secret:   rand.Text(),
		uuid:     randomUUID(),
		password: rand.Text(),
		http:     &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 10 * time.Second},
	}
	srv := s // "return nil, err" sets s to nil before this runs
	defer func() {
		if err != nil {
			srv.close(true)
			err = fmt.Errorf("start CouchDB (%d node(s)) from %s; files in %s: %w", n, root, dir, err)
		}
	}()
	seq := nodeSeq.Add(1)
	for i := range n {
		nd := s.newNode(i, fmt.Sprintf("couchtest%d_%d_%d@127.0.0.1", os.Getpid(), seq, i))
		if err = os.MkdirAll(filepath.Join(nd.dir, "data"), 0o755); err != nil {
			return nil, err
		}
		s.nodes = append(s.nodes, nd)
	}
	start := time.Now()
	err = childproc.RetryPortTaken(ctx, func() error { return s.boot(ctx) }, func() {
		s.killAll()
		for _, nd := range s.nodes {
			_ = os.RemoveAll(filepath.Join(nd.dir, "data"))
			_ = os.MkdirAll(filepath.Join(nd.dir, "data"), 0o755)
		}
	})
	if err != nil {
		return nil, err
	}
	if n > 1 {
		if err = s.join(ctx); err != nil {
			return nil, err
		}
	}
	s.startup = time.Since(start)
	return s, nil
}

// newNode is node id of the server, named name.
func (s *couchServer) newNode(id int, name string) *couchNode {
	nd := &couchNode{s: s, id: id, name: name, dir: filepath.Join(s.dir, "node"+strconv.Itoa(id))}
	nd.proc = childproc.Process{
		Name: fmt.Sprintf("node %d (%s)", id, name),
		Log:  filepath.Join(nd.dir, "couchdb.log"),
		Command: func() *exec.Cmd {
			cmd := exec.Command(filepath.Join(s.release, "bin", "couchdb"))
			cmd.Dir = nd.dir
			cmd.Env = append(os.Environ(),
				"COUCHDB_ARGS_FILE="+filepath.Join(nd.dir, "vm.args"),
				"COUCHDB_INI_FILES="+filepath.Join(s.release, "etc", "default.ini")+" "+filepath.Join(nd.dir, "local.ini"),
				"ERL_EPMD_PORT="+strconv.Itoa(s.epmdPort),
				"ERL_CRASH_DUMP="+filepath.Join(nd.dir, "erl_crash.dump"), // not in the read-only release
			)
			return cmd
		},
	}
	return nd
}

// boot picks ports, writes the configuration, starts epmd and every node,
// and waits for each to answer GET /_up.
func (s *couchServer) boot(ctx context.Context) error {
	ports, err := childproc.FreePorts(1 + len(s.nodes))
	if err != nil {
		return err
	}
	s.epmdPort = ports[0]
	for i, nd := range s.nodes {
		nd.port = ports[1+i]
		if err := nd.writeConfig(); err != nil {
			return err
		}
	}
	if err := s.startEpmd(ctx); err != nil {
		return err
	}
	for _, nd := range s.nodes {
		if err := nd.proc.Start(); err != nil {
			return err
		}
	}
	for _, nd := range s.nodes {
		if err := nd.waitUp(ctx, 2*time.Minute); err != nil {
			return err
		}
	}
	return nil
}

// startEpmd runs the nodes' own epmd in the foreground, so that it dies
// with the test binary, and waits until it accepts connections.
func (s *couchServer) startEpmd(ctx context.Context) error {
	bin, err := s.ertsBin("epmd")
	if err != nil {
		return err
	}
	s.epmd = &childproc.Process{
		Name: "epmd",
		Log:  filepath.Join(s.dir, "epmd.log"),
		Command: func() *exec.Cmd {
			return exec.Command(bin, "-port", strconv.Itoa(s.epmdPort), "-address", "127.0.0.1")
		},
	}
	if err := s.epmd.Start(); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	err = s.epmd.WaitReady(ctx, "", 20*time.Millisecond, func(ctx context.Context) error {
		c, err := (&net.Dialer{Timeout: time.Second}).DialContext(ctx, "tcp", "127.0.0.1:"+strconv.Itoa(s.epmdPort))
		if err == nil {
			_ = c.Close()
		}
		return err
	})
	if err != nil && !s.epmd.Running() {
		// Its only reason to exit at start: its port is taken.
		err = fmt.Errorf("%w: %w", childproc.ErrPortTaken, err)
	}
	return err
}

// ertsBin finds a program of the release's Erlang runtime.
func (s *couchServer) ertsBin(name string) (string, error) {
	m, _ := filepath.Glob(filepath.Join(s.release, "erts-*", "bin", name))
	if len(m) == 0 {
		return "", fmt.Errorf("no erts-*/bin/%s in the CouchDB release %s", name, s.release)
	}
	return m[0], nil
}

// writeConfig writes the node's vm.args and local.ini (CouchDB rewrites
// local.ini: it replaces the admin password with its hash).
func (nd *couchNode) writeConfig() error {
	s := nd.s
	vmArgs := strings.Join([]string{
		"-name " + nd.name,
		"-setcookie " + s.cookie,
		"-start_epmd false", // the nodes' own epmd runs already
		"-kernel inet_dist_use_interface {127,0,0,1}",
		"-kernel error_logger silent",
		"-sasl sasl_error_logger false",
		"-kernel prevent_overlapping_partitions false",
		"+Bd -noinput",
		"-os_mon start_cpu_sup false",
		"-os_mon start_memsup false",
		"-os_mon disk_space_check_interval 5",
		"-os_mon disk_almost_full_threshold 1.0",
		"",
	}, "\n")
	if err := os.WriteFile(filepath.Join(nd.dir, "vm.args"), []byte(vmArgs), 0o600); err != nil {
		return err
	}
	data := filepath.Join(nd.dir, "data")
	single, n := "true", 1
	if len(s.nodes) > 1 {
		single, n = "false", 3
	}
	var b strings.Builder
	sec := func(name string) { fmt.Fprintf(&b, "\n[%s]\n", name) }
	kv := func(k string, v any) { fmt.Fprintf(&b, "%s = %v\n", k, v) }
	b.WriteString("; Generated by internal/couchtest.\n")
	sec("couchdb")
	kv("single_node", single)
	kv("database_dir", data)
	kv("view_index_dir", data)
	kv("uuid", s.uuid)
	sec("cluster")
	kv("n", n)
	kv("q", 2)
	kv("reconnect_interval_sec", 1) // a restarted node rejoins in seconds
	sec("chttpd")
	kv("bind_address", "127.0.0.1")
	kv("port", nd.port)
	sec("chttpd_auth")
	kv("secret", s.secret)
	// Tests try wrong credentials on purpose; one test must not lock the
	// admin out of the server every test shares.
	sec("chttpd_auth_lockout")
	kv("mode", "off")
	sec("smoosh")
	kv("state_dir", data)
	sec("log")
	kv("level", "warning")
	sec("admins")
	kv(adminUser, s.password)
	return os.WriteFile(filepath.Join(nd.dir, "local.ini"), []byte(b.String()), 0o600)
}

// url is the node's base URL with the admin's credentials.
func (nd *couchNode) url() string {
	return "http://" + adminUser + ":" + nd.s.password + "@127.0.0.1:" + strconv.Itoa(nd.port)
}

// waitUp waits until the node answers GET /_up with 200.
func (nd *couchNode) waitUp(ctx context.Context, within time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, within)
	defer cancel()
	return nd.proc.WaitReady(ctx, "eaddrinuse", 50*time.Millisecond, func(ctx context.Context) error {
		status, body, err := nd.s.get(ctx, nd.url()+"/_up")
		if err == nil && status != http.StatusOK {
			err = fmt.Errorf("GET /_up: %d %s", status, bytes.TrimSpace(body))
		}
		return err
	})
}

// join makes node 0 add the others, finishes the cluster set-up (which
// creates _users and _replicator) and waits until every node lists every
// node as a member and as connected.
func (s *couchServer) join(ctx context.Context) error {
	first := s.nodes[0]
	for _, nd := range s.nodes[1:] {
		status, body, err := s.do(ctx, http.MethodPut, first.url()+"/_node/_local/_nodes/"+url.PathEscape(nd.name), []byte(`{}`))
		if err != nil {
			return err
		}
		if status != http.StatusCreated && status != http.StatusAccepted && status != http.StatusConflict {
			return fmt.Errorf("add node %s: %d %s", nd.name, status, bytes.TrimSpace(body))
		}
	}
	if err := s.waitMembers(ctx, 2*time.Minute); err != nil {
		return err
	}
	status, body, err := s.do(ctx, http.MethodPost, first.url()+"/_cluster_setup", []byte(`{"action":"finish_cluster"}`))
	if err != nil {
		return err
	}
	if status != http.StatusCreated && status != http.StatusOK {
		// A second finish answers 400 "Cluster is already finished".
		if !bytes.Contains(body, []byte("already finished")) {
			return fmt.Errorf("finish the cluster set-up: %d %s", status, bytes.TrimSpace(body))
		}
	}
	return nil
}

// waitMembers waits until every running node lists every node in
// cluster_nodes and every running node in all_nodes (the connected ones).
func (s *couchServer) waitMembers(ctx context.Context, within time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, within)
	defer cancel()
	var want, live []string
	for _, nd := range s.nodes {
		want = append(want, nd.name)
		if nd.proc.Running() {
			live = append(live, nd.name)
		}
	}
	var last error
	for {
		last = nil
		for _, nd := range s.nodes {
			if !nd.proc.Running() {
				continue
			}
			if err := nd.checkMembers(ctx, want, live); err != nil {
				last = err
				break
			}
		}
		if last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("cluster membership not complete: %w (last: %v)", ctx.Err(), last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (nd *couchNode) checkMembers(ctx context.Context, cluster, connected []string) error {
	status, body, err := nd.s.get(ctx, nd.url()+"/_membership")
	if err != nil {
		return err
	}
	if status != http.StatusOK {
		return fmt.Errorf("node %d: GET /_membership: %d %s", nd.id, status, bytes.TrimSpace(body))
	}
	var m struct {
		All     []string `json:"all_nodes"`
		Cluster []string `json:"cluster_nodes"`
	}
	if err := json.Unmarshal(body, &m); err != nil {
		return fmt.Errorf("node %d: /_membership: %w", nd.id, err)
	}
	if !containsAll(m.Cluster, cluster) || !containsAll(m.All, connected) {
		return fmt.Errorf("node %d: /_membership %s, want cluster_nodes %v and all_nodes %v", nd.id, bytes.TrimSpace(body), cluster, connected)
	}
	return nil
}

func containsAll(have, want []string) bool {
	set := map[string]bool{}
	for _, h := range have {
		set[h] = true
	}
	for _, w := range want {
		if !set[w] {
			return false
		}
	}
	return true
}

func (s *couchServer) get(ctx context.Context, u string) (int, []byte, error) {
	return s.do(ctx, http.MethodGet, u, nil)
}

func (s *couchServer) do(ctx context.Context, method, u string, body []byte) (int, []byte, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := s.http.Do(req)
	if err != nil {
		return 0, nil, unwrapURLError(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

// killAll kills every node and epmd and waits for them to exit.
func (s *couchServer) killAll() {
	for _, nd := range s.nodes {
		nd.proc.Kill()
	}
	if s.epmd != nil {
		s.epmd.Kill()
	}
}

// close stops everything and removes the files unless keep is set.
func (s *couchServer) close(keep bool) {
	s.closeOnce.Do(func() {
		s.killAll()
		if !keep {
			_ = os.RemoveAll(s.dir)
		}
	})
}

// logs names the nodes' log files.
func (s *couchServer) logs() string {
	paths := make([]string, len(s.nodes))
	for i, nd := range s.nodes {
		paths[i] = nd.proc.Log
	}
	return strings.Join(paths, " ")
}

// randomUUID is a random CouchDB server uuid: 32 hex digits.
func randomUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
