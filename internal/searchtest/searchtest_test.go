package searchtest

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestMain(m *testing.M) { Main(m) }

// roundTrip indexes a document, reads it back, counts it, and deletes it
// with _delete_by_query (the reindex module), on s.
func roundTrip(t *testing.T, s *Server) {
	t.Helper()
	prefix := s.IndexPrefix(t)
	index := prefix + "guest"
	typ := "_doc"
	doc := `{"namespace":"guest","name":"hello","path":"guest/hello","start":1700000000000}`
	b := s.MustDo(t, http.MethodPut, "/"+index+"/"+typ+"/guest%2Fabc?refresh=true", []byte(doc))
	var put struct {
		Result string `json:"result"`
	}
	if err := json.Unmarshal(b, &put); err != nil || put.Result != "created" {
		t.Fatalf("PUT: %s (%v), want result created", b, err)
	}
	b = s.MustDo(t, http.MethodGet, "/"+index+"/"+typ+"/guest%2Fabc", nil)
	var got struct {
		Found  bool            `json:"found"`
		Source json.RawMessage `json:"_source"`
	}
	if err := json.Unmarshal(b, &got); err != nil || !got.Found || !strings.Contains(string(got.Source), `"guest/hello"`) {
		t.Fatalf("GET: %s (%v), want the document", b, err)
	}
	if n := count(t, s, index); n != 1 {
		t.Fatalf("count = %d, want 1", n)
	}
	b = s.MustDo(t, http.MethodPost, "/"+index+"/_delete_by_query?refresh=true", []byte(`{"query":{"term":{"path.keyword":"guest/hello"}}}`))
	var del struct {
		Deleted int `json:"deleted"`
	}
	if err := json.Unmarshal(b, &del); err != nil || del.Deleted != 1 {
		t.Fatalf("_delete_by_query: %s (%v), want 1 deleted", b, err)
	}
	if n := count(t, s, index); n != 0 {
		t.Fatalf("count after _delete_by_query = %d, want 0", n)
	}
}

func count(t *testing.T, s *Server, index string) int {
	t.Helper()
	b := s.MustDo(t, http.MethodGet, "/"+index+"/_count", nil)
	var c struct {
		Count int `json:"count"`
	}
	if err := json.Unmarshal(b, &c); err != nil {
		t.Fatalf("_count: %s: %v", b, err)
	}
	return c.Count
}

func TestSharedServer(t *testing.T) {
	s := Start(t)
	t.Logf("server: %s, RSS %d MiB", s, s.RSS()>>20)
	if !s.External() {
		want, err := SelectedVersion()
		if err != nil {
			t.Fatal(err)
		}
		if s.Version() != want {
			t.Fatalf("Version() = %s, want %s", s.Version(), want)
		}
		if s.PID() == 0 || s.RSS() == 0 {
			t.Fatalf("PID %d, RSS %d: want a running JVM", s.PID(), s.RSS())
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	v, err := detectVersion(ctx, s)
	if err != nil || v != s.Version() {
		t.Fatalf("GET / says %q (%v), want %s", v, err, s.Version())
	}
	if s2 := Start(t); s2 != s {
		t.Fatalf("a second Start gave another server (%s, %s)", s2, s)
	}
	roundTrip(t, s)
}

func TestTLSAndBasicAuth(t *testing.T) {
	s := Start(t, WithTLS(), WithBasicAuth())
	if !strings.HasPrefix(s.URL(), "https://127.0.0.1:") || s.CAFile() == "" || s.Username() == "" || s.Password() == "" {
		t.Fatalf("URL %s, CA %q, user %q: want https with a CA and credentials", s.URL(), s.CAFile(), s.Username())
	}
	roundTrip(t, s)

	// Without the CA: the certificate is refused.
	if resp, err := http.Get(s.URL()); err == nil {
		resp.Body.Close()
		t.Fatal("GET without the CA succeeded")
	}
	// With the CA, without or with wrong credentials: 401.
	for _, pw := range []string{"", "wrong"} {
		c, err := newClient(s.CAPEM(), map[bool]string{true: "", false: s.Username()}[pw == ""], pw)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := c.Get(s.URL() + "/")
		if err != nil {
			t.Fatalf("GET with the CA: %v", err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized || resp.Header.Get("WWW-Authenticate") == "" {
			t.Fatalf("GET with password %q: %s, want 401 with WWW-Authenticate", pw, resp.Status)
		}
	}
	// The CA file is the PEM the client trusts.
	pem, err := os.ReadFile(s.CAFile())
	if err != nil || string(pem) != string(s.CAPEM()) {
		t.Fatalf("CA file: %v", err)
	}

	// The external-server path: ELASTICSEARCH_URL with credentials, read
	// through the proxy.
	u := strings.Replace(s.URL(), "https://", "https://"+s.Username()+":"+s.Password()+"@", 1)
	t.Setenv(EnvCAFile, s.CAFile())
	ext, err := newExternal(u)
	if err != nil {
		t.Fatalf("newExternal: %v", err)
	}
	if ext.Version() != s.Version() || ext.URL() != s.URL() || ext.Password() != s.Password() || !ext.External() {
		t.Fatalf("external %s (user %q): want %s at %s", ext, ext.Username(), s.Version(), s.URL())
	}
	if _, err := newExternal(strings.Replace(u, s.Password(), "nope", 1)); err == nil || strings.Contains(err.Error(), "nope") || strings.Contains(err.Error(), s.Password()) {
		t.Fatalf("newExternal with a wrong password: %v; want an error without the password", err)
	}
}

func TestIndexPrefixUnique(t *testing.T) {
	seen := map[string]bool{}
	for range 100 {
		p := IndexPrefix(t)
		if seen[p] || p != strings.ToLower(p) || !strings.HasPrefix(p, "st-") || !strings.HasSuffix(p, "-") {
			t.Fatalf("prefix %q: want unique, lower case, st-…-", p)
		}
		seen[p] = true
	}
}

func TestNoJava(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	t.Setenv(EnvJavaHome, "")
	_, err := startCluster(context.Background(), spec{version: DefaultVersion})
	if err == nil || !strings.Contains(err.Error(), "java is not installed") || !strings.Contains(err.Error(), EnvURL) {
		t.Fatalf("start without Java: %v; want a message naming the fix", err)
	}
}

func TestNoMaven(t *testing.T) {
	t.Setenv("XDG_CACHE_HOME", t.TempDir()) // an empty cache
	t.Setenv("PATH", t.TempDir())
	_, err := home(context.Background(), DefaultVersion)
	if err == nil || !strings.Contains(err.Error(), "mvn is not installed") {
		t.Fatalf("install without mvn: %v; want a message naming the fix", err)
	}
}

func TestSelected(t *testing.T) {
	for _, tc := range []struct {
		url, version string
		want         Kind
	}{
		{"", "", OpenSearch},
		{"", string(Elasticsearch7), Elasticsearch},
		{"http://127.0.0.1:1", "", External},
		{"http://127.0.0.1:1", "opensearch-latest", External}, // the version does not apply
	} {
		t.Setenv(EnvURL, tc.url)
		t.Setenv(EnvVersion, tc.version)
		if got, err := Selected(); err != nil || got != tc.want {
			t.Errorf("%s=%q %s=%q: Selected() = %q, %v; want %q", EnvURL, tc.url, EnvVersion, tc.version, got, err, tc.want)
		}
	}
}

func TestBadVersion(t *testing.T) {
	t.Setenv(EnvURL, "")
	t.Setenv(EnvVersion, "opensearch-latest")
	if _, err := Selected(); err == nil || !strings.Contains(err.Error(), "opensearch-X.Y.Z") {
		t.Fatalf("Selected with a bad version: %v", err)
	}
	for v, want := range map[Version][3]string{OpenSearch2: {"opensearch", "2.19.6", "2"}, Elasticsearch6: {"elasticsearch", "6.8.23", "6"}} {
		if got := [3]string{v.Distribution(), v.Number(), fmt.Sprint(v.Major())}; got != want {
			t.Fatalf("%s: %v, want %v", v, got, want)
		}
	}
}

func TestJarStem(t *testing.T) {
	for name, want := range map[string]string{
		"commons-codec-1.18.0.jar":        "commons-codec",
		"opensearch-common-2.19.6.jar":    "opensearch-common",
		"httpcore-nio-4.4.16.jar":         "httpcore-nio",
		"log4j-api-2.25.4.jar":            "log4j-api",
		"lucene-core-9.12.3.jar":          "lucene-core",
		"elasticsearch-core-6.8.23.jar":   "elasticsearch-core",
		"lucene-core-7.7.3-snapshot1.jar": "lucene-core",
	} {
		if got := jarStem(name); got != want {
			t.Errorf("jarStem(%q) = %q, want %q", name, got, want)
		}
	}
}

// The installed distribution has the reindex module, and no jar twice.
func TestInstalledModule(t *testing.T) {
	s := Start(t)
	if s.External() {
		t.Logf("external server: checking its modules only")
	} else {
		h, err := home(context.Background(), s.Version())
		if err != nil {
			t.Fatal(err)
		}
		mods, _ := filepath.Glob(filepath.Join(h, "modules", "reindex", "reindex-client-*.jar"))
		if len(mods) != 1 {
			t.Fatalf("modules/reindex holds %v", mods)
		}
	}
	b := s.MustDo(t, http.MethodGet, "/_nodes/plugins?filter_path=**.modules.name", nil)
	if !strings.Contains(string(b), `"reindex"`) {
		t.Fatalf("the server's modules %s lack reindex", b)
	}
}

// Every pinned version starts (the selected one shared, the others a
// dedicated node stopped at the end of its subtest), indexes, searches and
// deletes by query. -short runs the selected one only.
func TestPinnedVersions(t *testing.T) {
	selected, err := SelectedVersion()
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range Pinned() {
		t.Run(string(v), func(t *testing.T) {
			var s *Server
			switch {
			case v == selected && os.Getenv(EnvURL) == "":
				s = Start(t)
			case testing.Short():
				t.Skipf("-short: %s only", selected)
			default:
				s = StartCluster(t, 1, WithVersion(v)).Node(0)
			}
			t.Logf("%s: RSS %d MiB", v, s.RSS()>>20)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			got, err := detectVersion(ctx, s)
			if err != nil || got != v {
				t.Fatalf("GET / says %q (%v), want %s", got, err, v)
			}
			roundTrip(t, s)
		})
	}
}

// bulkDocs indexes docs from..to-1 into index through s, retrying the
// whole request until every item is stored (a cluster that lost a node
// refuses writes for a moment); ids make the retries idempotent.
func bulkDocs(t *testing.T, s *Server, index string, from, to int, within time.Duration) {
	t.Helper()
	var body strings.Builder
	for i := from; i < to; i++ {
		fmt.Fprintf(&body, "{\"index\":{\"_index\":%q,\"_id\":\"doc-%d\"}}\n{\"n\":%d}\n", index, i, i)
	}
	deadline := time.Now().Add(within)
	var last string
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		status, b, err := s.Do(ctx, http.MethodPost, "/_bulk?refresh=true", []byte(body.String()))
		cancel()
		var resp struct {
			Errors bool `json:"errors"`
			Items  []json.RawMessage
		}
		if err == nil && status == http.StatusOK && json.Unmarshal(b, &resp) == nil && !resp.Errors && len(resp.Items) == to-from {
			return
		}
		last = fmt.Sprintf("status %d, %v: %.500s", status, err, b)
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("bulk %d..%d not stored within %v; last: %s", from, to, within, last)
}

// A two-node cluster with one replica survives the loss of a node, and
// the node comes back with its data on its ports.
func TestClusterKillRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: no cluster")
	}
	v, err := SelectedVersion()
	if err != nil {
		t.Fatal(err)
	}
	if v.Distribution() == "elasticsearch" && v.Major() < 7 {
		v = OpenSearch2 // no clusters of Elasticsearch 6
	}
	c := StartCluster(t, 2, WithVersion(v))
	urls := c.URLs()
	s := c.Node(0)
	index := s.IndexPrefix(t) + "replicated"
	s.MustDo(t, http.MethodPut, "/"+index, []byte(`{"settings":{"number_of_shards":2,"number_of_replicas":1}}`))
	c.WaitForStatus(0, "green", 2*time.Minute)
	bulkDocs(t, s, index, 0, 100, time.Minute)

	m := c.ClusterManager()
	if m < 0 {
		t.Fatal("no elected cluster manager")
	}
	victim := 1 - m
	survivor := c.Node(m)
	if err := c.Kill(victim); err != nil {
		t.Fatal(err)
	}
	if c.Running(victim) {
		t.Fatalf("node %d still running after Kill", victim)
	}
	// The survivor promotes the replicas of the victim's primaries.
	bulkDocs(t, survivor, index, 100, 200, 2*time.Minute)
	if n := count(t, survivor, index); n != 200 {
		t.Fatalf("count on the survivor = %d, want 200", n)
	}

	if err := c.Restart(t.Context(), victim); err != nil {
		t.Fatal(err)
	}
	if c.URL(victim) != urls[victim] {
		t.Fatalf("node %d came back at %s, was %s", victim, c.URL(victim), urls[victim])
	}
	c.WaitForStatus(victim, "green", 3*time.Minute)
	// Each node holds a copy of every shard, and each copy every document.
	for i := range c.Len() {
		b := c.Node(i).MustDo(t, http.MethodGet, "/"+index+"/_count?preference=_only_local", nil)
		var cnt struct {
			Count  int `json:"count"`
			Shards struct {
				Successful int `json:"successful"`
			} `json:"_shards"`
		}
		if err := json.Unmarshal(b, &cnt); err != nil || cnt.Count != 200 || cnt.Shards.Successful != 2 {
			t.Fatalf("count of node %d's copies = %s (%v), want 200 in 2 shards", i, b, err)
		}
	}
}
