package searchtest

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"testing"
	"time"
)

// Cluster is a dedicated multi-node cluster, started for one test and
// stopped when it ends. Its nodes keep their ports and data across Kill
// and Restart.
//
// Every node is master- (cluster-manager-) eligible. With two nodes the
// voting configuration holds one of them: killing the other leaves a
// working cluster (its replicas are promoted), killing that one leaves no
// elected manager, and writes are refused until it is back.
// ClusterManager tells which is which.
type Cluster struct {
	t testing.TB
	c *cluster
}

// StartCluster starts nodes JVMs of the selected version (or WithVersion's)
// forming one cluster, and returns once every node sees all of them.
// ELASTICSEARCH_URL does not apply: a test kills these nodes. Clusters of
// Elasticsearch 6 are not supported. WithTLS and WithBasicAuth do not
// apply either.
func StartCluster(t testing.TB, nodes int, opts ...Option) *Cluster {
	t.Helper()
	o := applyOptions(opts)
	if o.tls || o.auth {
		t.Fatal("searchtest: WithTLS and WithBasicAuth apply to Start, not StartCluster")
	}
	v := o.version
	if v == "" {
		var err error
		if v, err = SelectedVersion(); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	c, err := startCluster(ctx, spec{version: v, nodes: nodes, heap: heap()})
	if err != nil {
		t.Fatalf("searchtest: %v", err)
	}
	t.Cleanup(func() {
		c.close(t.Failed())
		if t.Failed() {
			fmt.Fprintf(os.Stderr, "searchtest: %s failed; the cluster's logs are kept: %s\n", t.Name(), c.logs())
		}
	})
	t.Logf("searchtest: %d-node %s cluster ready in %v (JVM CPU %v) at %v", nodes, v, c.startup.Round(time.Millisecond), c.cpuTime().Round(10*time.Millisecond), (&Cluster{c: c}).URLs())
	return &Cluster{t: t, c: c}
}

// Version is the cluster's distribution and release.
func (c *Cluster) Version() Version { return c.c.spec.version }

// Len is the number of nodes.
func (c *Cluster) Len() int { return len(c.c.nodes) }

// URL is node i's base URL; it stays the same across Kill and Restart.
func (c *Cluster) URL(i int) string { return c.c.nodes[i].url() }

// URLs are every node's base URL.
func (c *Cluster) URLs() []string {
	out := make([]string, len(c.c.nodes))
	for i := range c.c.nodes {
		out[i] = c.URL(i)
	}
	return out
}

// Node is node i as a Server (for Do, PID, RSS, Logs).
func (c *Cluster) Node(i int) *Server { return nodeServer(c.c.nodes[i]) }

func (c *Cluster) node(i int) (*node, error) {
	if i < 0 || i >= len(c.c.nodes) {
		return nil, fmt.Errorf("searchtest: node %d: the cluster has nodes 0 to %d", i, len(c.c.nodes)-1)
	}
	return c.c.nodes[i], nil
}

// Running reports whether node i's JVM is alive (false after Kill).
func (c *Cluster) Running(i int) bool {
	n, err := c.node(i)
	return err == nil && n.proc.Running()
}

// Kill kills node i with SIGKILL (no shutdown of any kind) and waits for
// it to exit. Its data and ports stay for Restart.
func (c *Cluster) Kill(i int) error {
	n, err := c.node(i)
	if err != nil {
		return err
	}
	n.proc.Kill()
	c.t.Logf("searchtest: killed node %d", i)
	return nil
}

// Restart starts node i again after Kill, on its ports and data, and
// returns once every node sees all of them again (health yellow or
// better).
func (c *Cluster) Restart(ctx context.Context, i int) error {
	n, err := c.node(i)
	if err != nil {
		return err
	}
	start := time.Now()
	if err := n.start(); err != nil {
		return fmt.Errorf("searchtest: restart node %d: %w", i, err)
	}
	if err := c.c.waitReady(ctx, 5*time.Minute); err != nil {
		return fmt.Errorf("searchtest: restart node %d: %w", i, err)
	}
	c.t.Logf("searchtest: node %d back in %v", i, time.Since(start).Round(time.Millisecond))
	return nil
}

// ClusterManager is the index of the elected manager (master) node, as
// the first running node that answers sees it; -1 when none is elected or
// none answers.
func (c *Cluster) ClusterManager() int {
	for _, n := range c.c.nodes {
		if !n.proc.Running() {
			continue
		}
		s := nodeServer(n)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		status, body, err := s.Do(ctx, http.MethodGet, "/_cat/master?format=json", nil)
		cancel()
		if err != nil || status != http.StatusOK {
			continue
		}
		var rows []struct {
			Node string `json:"node"`
		}
		if json.Unmarshal(body, &rows) != nil || len(rows) != 1 {
			continue
		}
		for j, o := range c.c.nodes {
			if o.name() == rows[0].Node {
				return j
			}
		}
	}
	return -1
}

// WaitForStatus waits until the cluster's health, as node i sees it, is
// status ("green", "yellow") or better, and fails the test otherwise.
func (c *Cluster) WaitForStatus(i int, status string, within time.Duration) {
	c.t.Helper()
	s := nodeServer(c.c.nodes[i])
	deadline := time.Now().Add(within)
	var last string
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		code, body, err := s.Do(ctx, http.MethodGet, "/_cluster/health?wait_for_status="+status+"&timeout=5s", nil)
		cancel()
		if err == nil && code == http.StatusOK {
			var h struct {
				TimedOut bool `json:"timed_out"`
			}
			if json.Unmarshal(body, &h) == nil && !h.TimedOut {
				return
			}
		}
		last = fmt.Sprintf("status %d, %v: %s", code, err, body)
		time.Sleep(100 * time.Millisecond)
	}
	c.t.Fatalf("searchtest: cluster not %s within %v (last: %s)", status, within, last)
}
