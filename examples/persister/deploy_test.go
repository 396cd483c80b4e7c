package main

import (
	"bytes"
	"debug/elf"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"go.yaml.in/yaml/v3"
)

// The parts of the manifests the test checks.
type manifest struct {
	Kind     string `yaml:"kind"`
	Metadata struct {
		Name string `yaml:"name"`
	} `yaml:"metadata"`
	Spec struct {
		MaxUnavailable any `yaml:"maxUnavailable"`
		Selector       struct {
			MatchLabels map[string]string `yaml:"matchLabels"`
		} `yaml:"selector"`
		Template struct {
			Metadata struct {
				Labels      map[string]string `yaml:"labels"`
				Annotations map[string]string `yaml:"annotations"`
			} `yaml:"metadata"`
			Spec struct {
				TerminationGracePeriodSeconds int `yaml:"terminationGracePeriodSeconds"`
				SecurityContext               struct {
					RunAsNonRoot bool `yaml:"runAsNonRoot"`
					RunAsUser    int  `yaml:"runAsUser"`
				} `yaml:"securityContext"`
				Containers []container `yaml:"containers"`
			} `yaml:"spec"`
		} `yaml:"template"`
	} `yaml:"spec"`
}

type container struct {
	Args  []string `yaml:"args"`
	Ports []struct {
		Name          string `yaml:"name"`
		ContainerPort int    `yaml:"containerPort"`
	} `yaml:"ports"`
	Env []struct {
		Name      string         `yaml:"name"`
		Value     *string        `yaml:"value"`
		ValueFrom map[string]any `yaml:"valueFrom"`
	} `yaml:"env"`
	ReadinessProbe probe `yaml:"readinessProbe"`
	LivenessProbe  probe `yaml:"livenessProbe"`
	Resources      struct {
		Requests map[string]string `yaml:"requests"`
		Limits   map[string]string `yaml:"limits"`
	} `yaml:"resources"`
	SecurityContext struct {
		AllowPrivilegeEscalation *bool `yaml:"allowPrivilegeEscalation"`
		ReadOnlyRootFilesystem   bool  `yaml:"readOnlyRootFilesystem"`
	} `yaml:"securityContext"`
}

type probe struct {
	HTTPGet struct {
		Path string `yaml:"path"`
		Port any    `yaml:"port"`
	} `yaml:"httpGet"`
}

func readManifests(t *testing.T) map[string]manifest {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("deploy", "kubernetes.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]manifest{}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	for {
		var m manifest
		if err := dec.Decode(&m); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("deploy/kubernetes.yaml: %v", err)
		}
		out[m.Kind] = m
	}
	return out
}

// serviceEnv is every environment variable the service reads besides its
// flags' (flagEnv), and the Go runtime's.
var serviceEnv = map[string]bool{"POD_NAME": true, "PERSISTER_SASL_PASSWORD": true, "GOMEMLIMIT": true, "GOGC": true, "GOMAXPROCS": true}

// TestKubernetesManifestMatchesTheService: the Deployment's flags and
// variables are the service's, and parse into a valid configuration; its
// probes and scrape settings name the service's endpoints on its port;
// its memory request covers the measured bound; a PodDisruptionBudget
// covers its pods.
func TestKubernetesManifestMatchesTheService(t *testing.T) {
	ms := readManifests(t)
	d, ok := ms["Deployment"]
	if !ok {
		t.Fatal("no Deployment in deploy/kubernetes.yaml")
	}
	if len(d.Spec.Template.Spec.Containers) != 1 {
		t.Fatalf("%d containers, want the persister alone", len(d.Spec.Template.Spec.Containers))
	}
	c := d.Spec.Template.Spec.Containers[0]

	// Every variable is the service's, the Go runtime's, or one that
	// another variable's value uses ($(NAME), expanded by Kubernetes).
	known := map[string]bool{}
	for _, env := range flagEnv {
		known[env] = true
	}
	env := map[string]string{}
	var values strings.Builder
	for _, e := range c.Env {
		if e.Value != nil {
			values.WriteString(*e.Value + "\n")
		}
	}
	for _, e := range c.Env {
		if !known[e.Name] && !serviceEnv[e.Name] && !strings.Contains(values.String(), "$("+e.Name+")") {
			t.Errorf("variable %s: the service does not read it, and no other variable uses it", e.Name)
		}
		switch {
		case e.Value != nil:
			env[e.Name] = *e.Value
		case e.ValueFrom != nil:
			env[e.Name] = "from-" + strings.ToLower(e.Name) // a secret's or a field's value
		default:
			t.Errorf("variable %s has neither value nor valueFrom", e.Name)
		}
	}
	for name, v := range env {
		env[name] = regexp.MustCompile(`\$\(([A-Z_]+)\)`).ReplaceAllStringFunc(v, func(ref string) string {
			return env[ref[2:len(ref)-1]]
		})
	}
	if env["POD_NAME"] == "" {
		t.Error("no POD_NAME: the service's group instance id (static membership) comes from it")
	}
	s, err := parse(c.Args, func(k string) string { return env[k] }, io.Discard)
	if err != nil {
		t.Fatalf("the service refuses the manifest's flags %q and variables: %v", c.Args, err)
	}
	if s.groupInstanceID != env["POD_NAME"] {
		t.Errorf("group instance id %q, want the pod's name", s.groupInstanceID)
	}

	// Ports and probes: the listen port, and endpoints the service serves.
	_, port, err := splitPort(s.listen)
	if err != nil {
		t.Fatalf("listen %q: %v", s.listen, err)
	}
	portNames := map[string]int{}
	for _, p := range c.Ports {
		portNames[p.Name] = p.ContainerPort
		if p.ContainerPort != port {
			t.Errorf("container port %d, but the service listens on %d", p.ContainerPort, port)
		}
	}
	served := servedPaths(t)
	for name, pr := range map[string]probe{"readiness": c.ReadinessProbe, "liveness": c.LivenessProbe} {
		if !served[pr.HTTPGet.Path] {
			t.Errorf("%s probe path %q is not served", name, pr.HTTPGet.Path)
		}
		if probePort(pr.HTTPGet.Port, portNames) != port {
			t.Errorf("%s probe port %v is not the service's %d", name, pr.HTTPGet.Port, port)
		}
	}
	if c.ReadinessProbe.HTTPGet.Path != "/ready" || c.LivenessProbe.HTTPGet.Path != "/ping" {
		t.Errorf("readiness %q and liveness %q: want /ready and /ping (/ready fails while a dependency is down, which must not restart the pod)",
			c.ReadinessProbe.HTTPGet.Path, c.LivenessProbe.HTTPGet.Path)
	}
	ann := d.Spec.Template.Metadata.Annotations
	if ann["prometheus.io/scrape"] != "true" || ann["prometheus.io/port"] != strconv.Itoa(port) || !served[ann["prometheus.io/path"]] || ann["prometheus.io/path"] != "/metrics" {
		t.Errorf("scrape annotations %v: want scrape on port %d, path /metrics", ann, port)
	}

	// Memory: the live heap stays within the in-flight cap plus 37 MiB
	// (the worst measured: lz4 from Go producers), and the runtime keeps
	// up to twice the live heap.
	need := 2 * (s.maxInFlight + 37<<20)
	if req := quantity(t, c.Resources.Requests["memory"]); req < need {
		t.Errorf("memory request %s below twice the in-flight cap plus overhead (%d MiB)", c.Resources.Requests["memory"], need>>20)
	}
	if lim := quantity(t, c.Resources.Limits["memory"]); lim < quantity(t, c.Resources.Requests["memory"]) {
		t.Errorf("memory limit %s below the request", c.Resources.Limits["memory"])
	}
	if gml, ok := env["GOMEMLIMIT"]; ok && quantity(t, strings.TrimSuffix(gml, "B")) >= quantity(t, c.Resources.Limits["memory"]) {
		t.Errorf("GOMEMLIMIT %s is not below the memory limit %s", gml, c.Resources.Limits["memory"])
	}

	sc := d.Spec.Template.Spec.SecurityContext
	if !sc.RunAsNonRoot || sc.RunAsUser == 0 || c.SecurityContext.AllowPrivilegeEscalation == nil || *c.SecurityContext.AllowPrivilegeEscalation || !c.SecurityContext.ReadOnlyRootFilesystem {
		t.Errorf("security context %+v / %+v: want a non-root user, no privilege escalation, a read-only root", sc, c.SecurityContext)
	}
	if d.Spec.Template.Spec.TerminationGracePeriodSeconds < int(s.heartbeat.Seconds())+30 {
		t.Errorf("termination grace period %d s: the in-flight batch needs time to finish", d.Spec.Template.Spec.TerminationGracePeriodSeconds)
	}

	pdb, ok := ms["PodDisruptionBudget"]
	if !ok {
		t.Fatal("no PodDisruptionBudget")
	}
	for k, v := range pdb.Spec.Selector.MatchLabels {
		if d.Spec.Template.Metadata.Labels[k] != v {
			t.Errorf("the budget selects %s=%s, which the pods do not carry", k, v)
		}
	}
	if len(pdb.Spec.Selector.MatchLabels) == 0 || pdb.Spec.MaxUnavailable == nil {
		t.Errorf("budget %+v: want a selector and maxUnavailable", pdb.Spec)
	}
}

// TestDockerfileBuildsAStaticNonRootImage: the image's binary is built as
// a static one (built here the same way, and checked), runs as a non-root
// user on a base without a shell, and exposes the service's port.
func TestDockerfileBuildsAStaticNonRootImage(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("deploy", "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	df := string(b)
	stages := regexp.MustCompile(`(?m)^FROM\s+(\S+)`).FindAllStringSubmatch(df, -1)
	if len(stages) < 2 {
		t.Fatalf("want a build stage and a final one, got %v", stages)
	}
	final := stages[len(stages)-1][1]
	if final != "scratch" && !strings.HasPrefix(final, "gcr.io/distroless/static") {
		t.Errorf("final image %s: want scratch or distroless/static (no shell)", final)
	}
	last := df[strings.LastIndex(df, "\nFROM "):]
	if m := regexp.MustCompile(`(?m)^USER\s+(\S+)`).FindStringSubmatch(last); m == nil || strings.HasPrefix(m[1], "0") || strings.HasPrefix(m[1], "root") {
		t.Errorf("final stage's USER %v: want a non-root user", m)
	}
	if !strings.Contains(last, "EXPOSE 8080") {
		t.Error("the final stage does not EXPOSE 8080, the service's default port")
	}
	if !regexp.MustCompile(`(?m)^ENTRYPOINT \["/persister"\]`).MatchString(last) {
		t.Error(`want ENTRYPOINT ["/persister"] (exec form: there is no shell)`)
	}
	build := regexp.MustCompile(`(?m)^RUN (CGO_ENABLED=0 go build\b.*?) -o \S+ (\./examples/persister)$`).FindStringSubmatch(df)
	if build == nil {
		t.Fatal("no `RUN CGO_ENABLED=0 go build … -o … ./examples/persister` line")
	}
	// Build the binary as the Dockerfile does, from the repository root.
	out := filepath.Join(t.TempDir(), "persister")
	args := strings.Fields(strings.TrimPrefix(build[1], "CGO_ENABLED=0 go ")) // no quoted arguments
	cmd := exec.Command("go", append(args, "-o", out, build[2])...)
	cmd.Dir = filepath.Join("..", "..")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if msg, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%v: %v\n%s", cmd.Args, err, msg)
	}
	f, err := elf.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
			t.Fatalf("the binary is dynamically linked (%v): the image has no libc", p.Type)
		}
	}
}

// servedPaths reports which of the manifest's paths the service's HTTP
// handler serves (anything but 404).
func servedPaths(t *testing.T) map[string]bool {
	t.Helper()
	var up atomic.Bool
	h := routes(nil, &up, newCouchProbe("http://127.0.0.1:1", "db"), prometheus.NewRegistry())
	served := map[string]bool{}
	for _, path := range []string{"/ping", "/ready", "/metrics", "/healthz"} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		served[path] = rec.Code != http.StatusNotFound
	}
	if served["/healthz"] {
		t.Fatal("the handler serves every path: the check tells nothing")
	}
	return served
}

func splitPort(listen string) (string, int, error) {
	i := strings.LastIndex(listen, ":")
	if i < 0 {
		return "", 0, errors.New("no port")
	}
	p, err := strconv.Atoi(listen[i+1:])
	return listen[:i], p, err
}

func probePort(port any, names map[string]int) int {
	switch p := port.(type) {
	case int:
		return p
	case string:
		return names[p]
	}
	return -1
}

// quantity parses a Kubernetes memory quantity (Ki, Mi, Gi or bytes).
func quantity(t *testing.T, q string) int64 {
	t.Helper()
	for suffix, mult := range map[string]int64{"Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30} {
		if n, ok := strings.CutSuffix(q, suffix); ok {
			v, err := strconv.ParseInt(n, 10, 64)
			if err != nil {
				t.Fatalf("quantity %q: %v", q, err)
			}
			return v * mult
		}
	}
	v, err := strconv.ParseInt(q, 10, 64)
	if err != nil {
		t.Fatalf("quantity %q: %v", q, err)
	}
	return v
}
