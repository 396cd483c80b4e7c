package hardeningtest

import (
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-whisk/activationstore/codec"
	"github.com/go-whisk/activationstore/internal/activationtest"
	"github.com/go-whisk/activationstore/internal/couchtest"
	"github.com/go-whisk/activationstore/internal/kafkatest"
	"github.com/go-whisk/activationstore/internal/servicetest"
)

// The persister service never prints the CouchDB password: not when
// CouchDB is down at start, not when it fails mid-run.
func TestPersisterServiceHidesCouchPassword(t *testing.T) {
	buildStart := time.Now()
	bin := servicetest.Build(t, false)
	buildTime := time.Since(buildStart)
	var summary []string

	t.Run("CouchDB down at start", func(t *testing.T) {
		couchURL, proxy, secrets := couchCredentials(t)
		scan := &leakScan{secrets: secrets}
		proxy.Drop()
		start := time.Now()
		svc := servicetest.Run(t, bin, nil, "-couchdb", couchURL, "-brokers", closedPort(t),
			"-db", couchtest.DBName(t), "-listen", "127.0.0.1:0", "-log-level", "debug")
		exited, err := svc.Wait(30 * time.Second)
		switch {
		case !exited:
			t.Fatalf("the service neither started nor exited within 30s with CouchDB down; stderr:\n%s", svc.Logs())
		case err == nil:
			t.Errorf("the service exited 0 with CouchDB down; stderr:\n%s", svc.Logs())
		}
		out := svc.Logs()
		dumpOnRequest(t, out)
		scan.check(t, "service stderr", out)
		if !strings.Contains(out, "persister:") || !strings.Contains(out, proxy.Addr()) {
			t.Errorf("stderr does not explain the failure (want the server's address): %q", out)
		}
		summary = append(summary, "down at start: exit after "+time.Since(start).Round(time.Millisecond).String()+", stderr "+itoa(len(out))+" bytes clean")
	})

	t.Run("CouchDB fails mid-run", func(t *testing.T) {
		couchURL, proxy, secrets := couchCredentials(t)
		scan := &leakScan{secrets: secrets}
		b := kafkatest.Start(t)
		topic := kafkatest.Topic(t, "completed-service")
		b.CreateTopic(t, topic, 1, nil)
		base, db := couchtest.URL(t), couchtest.DBName(t)
		svc := servicetest.Start(t, bin, nil, "-couchdb", couchURL, "-brokers", b.Addr(), "-db", db,
			"-listen", "127.0.0.1:0", "-log-level", "debug",
			"-topic-pattern", "^"+topic+"$", "-group-id", kafkatest.Topic(t, "group"),
			"-dead-letter-topic", kafkatest.Topic(t, "dlq"),
			"-session-timeout", "3s", "-heartbeat", "100ms", "-batch-wait", "5ms")

		persisted := func(id string) bool {
			status, _, err := couchtest.Do(ctxFor(t, 10*time.Second), http.MethodGet, base,
				"/"+url.PathEscape(db)+"/"+url.PathEscape("guest/"+id), nil)
			return err == nil && status == http.StatusOK
		}
		publish := func() string {
			a := activationtest.New("guest")
			v, err := codec.MarshalResultMessage(codec.TransactionID{ID: "tid-service", Start: a.Start}, a)
			if err != nil {
				t.Fatal(err)
			}
			produceValues(t, b.Addr(), topic, [][]byte{v})
			return a.ActivationID
		}
		first := publish()
		svc.Eventually(t, 30*time.Second, "the service to persist a record", func() bool { return persisted(first) })

		proxy.Drop()
		second := publish()
		svc.Eventually(t, 15*time.Second, "the service to log a failed write", func() bool {
			return strings.Contains(svc.Logs(), "write to the primary failed")
		})
		// The HTTP endpoints must not show the password either.
		var bodies []string
		for _, path := range []string{"/ready", "/metrics"} {
			_, body := svc.Get(t, path)
			bodies = append(bodies, body)
			scan.check(t, "GET "+path, body)
		}
		if err := proxy.Restore(); err != nil {
			t.Fatal(err)
		}
		svc.Eventually(t, 30*time.Second, "the record published while CouchDB was down to be persisted", func() bool { return persisted(second) })

		if err := svc.Terminate(t, 15*time.Second); err != nil {
			t.Errorf("the service exited with %v after SIGTERM", err)
		}
		out := svc.Logs()
		dumpOnRequest(t, out)
		lines := strings.Split(strings.TrimSpace(out), "\n")
		for i, line := range lines {
			scan.check(t, "service stderr line "+itoa(i+1), line)
		}
		if !strings.Contains(out, `"level":"DEBUG"`) {
			t.Errorf("the service logged nothing at debug level; the scan proves less than it should")
		}
		summary = append(summary, "fails mid-run: "+itoa(len(lines))+" stderr lines and "+itoa(len(bodies))+" HTTP bodies clean, record persisted after CouchDB came back")
	})
	t.Logf("SUMMARY TestPersisterServiceHidesCouchPassword: build %v; %s", buildTime.Round(time.Millisecond), strings.Join(summary, "; "))
}

func itoa(n int) string { return strconv.Itoa(n) }

// dumpOnRequest logs text when HARDENING_DUMP is set, to inspect by eye what
// the scans checked.
func dumpOnRequest(t *testing.T, text string) {
	if os.Getenv("HARDENING_DUMP") != "" {
		t.Logf("output:\n%s", text)
	}
}
