package couchtest

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// needRelease fails the test when no CouchDB release is found: every test
// run is meant to have one (see EnvRelease).
func needRelease(t *testing.T) {
	t.Helper()
	if _, err := releaseRoot(); err != nil {
		t.Fatalf("a real CouchDB is needed here: %v", err)
	}
}

func TestSingleNodeIsRealCouchDB(t *testing.T) {
	needRelease(t)
	ctx := ctxT(t)
	s, err := StartSingle(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	status, body, err := Do(ctx, http.MethodGet, s.URL(), "/", nil)
	if err != nil || status != http.StatusOK {
		t.Fatalf("GET /: %d %s %v", status, body, err)
	}
	var welcome struct{ CouchDB, Version string }
	if err := json.Unmarshal(body, &welcome); err != nil || welcome.CouchDB != "Welcome" || !strings.HasPrefix(welcome.Version, "3.") {
		t.Fatalf("GET / = %s, want Apache CouchDB 3.x", body)
	}
	// Anonymous requests are refused: the server has an admin.
	anon := strings.Replace(s.URL(), adminUser+":"+s.couch.password+"@", "", 1)
	if status, _, err := Do(ctx, http.MethodGet, anon, "/_all_dbs", nil); err != nil || status != http.StatusUnauthorized {
		t.Errorf("anonymous GET /_all_dbs: %d %v, want 401", status, err)
	}
	// Wrong passwords do not lock the admin out of a shared server.
	bad := strings.Replace(s.URL(), s.couch.password, "wrong", 1)
	for range 8 {
		_, _, _ = Do(ctx, http.MethodGet, bad, "/_all_dbs", nil)
	}
	if status, body, err := Do(ctx, http.MethodGet, s.URL(), "/_all_dbs", nil); err != nil || status != http.StatusOK {
		t.Errorf("GET /_all_dbs after 8 failed logins: %d %s %v", status, body, err)
	}
	rss, err := s.RSS()
	if err != nil || rss < 10<<20 {
		t.Errorf("RSS %d %v: want the resident memory of a running node", rss, err)
	}
	t.Logf("single node: started in %v, RSS %d MiB", s.Startup().Round(time.Millisecond), rss>>20)
	// Its databases live in its own temporary folder, not in the release.
	if _, err := os.Stat(filepath.Join(s.couch.nodes[0].dir, "data", "_dbs.couch")); err != nil {
		t.Errorf("the node's data folder has no _dbs.couch: %v", err)
	}
}

func TestClusterNodesStopAndRestart(t *testing.T) {
	needRelease(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	c, err := StartCluster(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if t.Failed() {
			c.KeepFiles()
			return
		}
		c.Close()
	}()
	if c.Kind() != Cluster || c.Nodes() != 3 {
		t.Fatalf("StartCluster: kind %s, %d nodes", c.Kind(), c.Nodes())
	}
	rss, _ := c.RSS()
	t.Logf("cluster: started in %v, RSS %d MiB (3 nodes)", c.Startup().Round(time.Millisecond), rss>>20)
	urls := c.URLs()
	db := "t_cluster_" + randomUUID()[:8]
	if err := CreateDB(ctx, urls[0], db); err != nil {
		t.Fatal(err)
	}
	// n = 3, q = 2 on every node.
	for i, u := range urls {
		status, body, err := Do(ctx, http.MethodGet, u, "/"+db, nil)
		if err != nil || status != http.StatusOK {
			t.Fatalf("node %d: GET /%s: %d %s %v", i, db, status, body, err)
		}
		var info struct {
			Cluster struct{ N, Q int } `json:"cluster"`
		}
		if err := json.Unmarshal(body, &info); err != nil || info.Cluster.N != 3 || info.Cluster.Q != 2 {
			t.Fatalf("node %d: database info %s: want cluster n=3 q=2", i, body)
		}
	}
	put := func(u, id string) int {
		status, body, err := Do(ctx, http.MethodPut, u, "/"+db+"/"+id, []byte(`{"v":1}`))
		if err != nil {
			t.Fatalf("PUT %s: %v", id, err)
		}
		if status != http.StatusCreated && status != http.StatusAccepted {
			t.Fatalf("PUT %s: %d %s", id, status, body)
		}
		return status
	}
	put(urls[0], "before")

	if err := c.Kill(0); err != nil {
		t.Fatal(err)
	}
	if c.Running(0) {
		t.Fatal("node 0 runs after Kill")
	}
	if _, _, err := Do(ctx, http.MethodGet, urls[0], "/_up", nil); err == nil {
		t.Fatal("node 0 answers after Kill")
	}
	// Two copies of three are a quorum: writes through node 1 succeed.
	if status := put(urls[1], "while_down"); status != http.StatusCreated {
		t.Errorf("PUT with one node of three down: %d, want 201 (w=2 of n=3)", status)
	}

	if err := c.Restart(ctx, 0); err != nil {
		t.Fatal(err)
	}
	// The restarted node serves what was written while it was down.
	deadline := time.Now().Add(30 * time.Second)
	for {
		status, body, err := Do(ctx, http.MethodGet, urls[0], "/"+db+"/while_down", nil)
		if err == nil && status == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("restarted node 0: GET while_down: %d %s %v", status, body, err)
		}
		time.Sleep(100 * time.Millisecond)
	}

	if err := c.Stop(2); err != nil {
		t.Fatal(err)
	}
	if c.Running(2) {
		t.Fatal("node 2 runs after Stop")
	}
	put(urls[0], "node2_stopped")
	if err := c.Restart(ctx, 2); err != nil {
		t.Fatal(err)
	}
	if err := DeleteDB(ctx, urls[2], db); err != nil {
		t.Fatal(err)
	}
}

func TestClusterURLsIsShared(t *testing.T) {
	needRelease(t)
	a := ClusterURLs(t)
	b := ClusterURLs(t)
	if len(a) != 3 || strings.Join(a, ",") != strings.Join(b, ",") {
		t.Fatalf("ClusterURLs: %v then %v, want the same 3 nodes", a, b)
	}
	ctx := ctxT(t)
	db := DBName(t)
	if err := CreateDB(ctx, a[1], db); err != nil {
		t.Fatal(err)
	}
	status, body, err := Do(ctx, http.MethodGet, a[2], "/_membership", nil)
	if err != nil || status != http.StatusOK || strings.Count(string(body), "@127.0.0.1") != 6 {
		t.Fatalf("/_membership: %d %s %v, want 3 nodes in all_nodes and cluster_nodes", status, body, err)
	}
}

func TestUntarRefusesEscapes(t *testing.T) {
	dir := t.TempDir()
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	_ = tw.WriteHeader(&tar.Header{Name: "../evil", Mode: 0o644, Size: 1, Typeflag: tar.TypeReg})
	_, _ = tw.Write([]byte("x"))
	_ = tw.Close()
	_ = gz.Close()
	p := filepath.Join(dir, "couchdb-evil.tar.gz")
	if err := os.WriteFile(p, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "out")
	if err := os.Mkdir(out, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := untar(p, out); err == nil || !strings.Contains(err.Error(), "leaves") {
		t.Fatalf("untar of ../evil: %v, want a refusal", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "evil")); err == nil {
		t.Fatal("untar wrote outside its folder")
	}
	// A tarball that holds no release is an error, not an empty release.
	t.Setenv("XDG_CACHE_HOME", filepath.Join(dir, "cache"))
	if _, err := releaseAt(dir); err == nil {
		t.Fatal("releaseAt accepted a tarball without bin/couchdb")
	}
}

func TestSelectedFollowsEnvironment(t *testing.T) {
	t.Setenv(EnvURL, "")
	t.Setenv(EnvMode, "bogus")
	if _, err := Selected(); err == nil || !strings.Contains(err.Error(), "single, cluster or pouchdb") {
		t.Errorf("COUCHTEST=bogus: %v, want an error naming the choices", err)
	}
	t.Setenv(EnvMode, "pouchdb")
	if k, err := Selected(); err != nil || k != PouchDB {
		t.Errorf("COUCHTEST=pouchdb: %s %v", k, err)
	}
	t.Setenv(EnvMode, "cluster")
	if _, err := releaseRoot(); err == nil {
		if k, err := Selected(); err != nil || k != Cluster {
			t.Errorf("COUCHTEST=cluster: %s %v", k, err)
		}
	}
	t.Setenv(EnvURL, "http://127.0.0.1:1")
	if k, err := Selected(); err != nil || k != External {
		t.Errorf("COUCHDB_URL set: %s %v, want external", k, err)
	}
}
