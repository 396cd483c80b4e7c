package persister

import (
	"bytes"
	"errors"
	"go/ast"
	"go/importer"
	"go/parser"
	"go/token"
	"go/types"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/go-whisk/activationstore/kafkastore"
	"github.com/go-whisk/activationstore/primary/memory"
)

// typeCheck type-checks src, a file importing this module's packages,
// against their compiled export data, and returns the type errors.
func typeCheck(t *testing.T, exports map[string]string, src string) []string {
	t.Helper()
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, "snippet.go", src, 0)
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	imp := importer.ForCompiler(fset, "gc", func(path string) (io.ReadCloser, error) {
		file, ok := exports[path]
		if !ok || file == "" {
			return nil, errors.New("no export data for " + path)
		}
		return os.Open(file)
	})
	var errs []string
	conf := types.Config{Importer: imp, Error: func(err error) { errs = append(errs, err.Error()) }}
	_, _ = conf.Check("snippet", fset, []*ast.File{f}, nil)
	return errs
}

// exportData maps this package's dependencies (and itself) to their
// compiled export data, as the go command builds them.
func exportData(t *testing.T) map[string]string {
	t.Helper()
	cmd := exec.Command("go", "list", "-export", "-deps", "-f", "{{.ImportPath}}={{.Export}}", ".")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list -export: %v\n%s", err, stderr.String())
	}
	m := map[string]string{}
	for line := range strings.Lines(string(out)) {
		path, file, _ := strings.Cut(strings.TrimSpace(line), "=")
		m[path] = file
	}
	return m
}

// A Store option given to the Persister, or a Persister option given to
// the Store, does not compile; the shared options compile with both, and
// no other package can make an Option of its own.
func TestOptionsAreTyped(t *testing.T) {
	exports := exportData(t)
	const header = `package snippet

import (
	"github.com/go-whisk/activationstore/kafkastore"
	"github.com/go-whisk/activationstore/kafkastore/persister"
	"github.com/go-whisk/activationstore/store"
)

var primary store.Store
var _, _ = kafkastore.New, persister.New

`
	for name, tc := range map[string]struct {
		body    string
		wantErr string // "" compiles
	}{
		"shared options with both": {`func f() {
	conn := kafkastore.WithBrokers("h:9092")
	_, _ = kafkastore.New(primary, conn, kafkastore.WithClientID("c"), kafkastore.WithTopic("completed-others"))
	_, _ = persister.New(primary, conn, kafkastore.WithClientID("c"), persister.WithGroupID("g"))
	both := kafkastore.Connection(conn, kafkastore.WithLogger(nil))
	_ = []kafkastore.Option{both}
	_ = []persister.Option{both}
}`, ""},
		"store option to the persister": {`func f() {
	_, _ = persister.New(primary, kafkastore.WithBrokers("h:9092"), kafkastore.WithTopic("t"))
}`, "does not implement persister.Option"},
		"persister option to the store": {`func f() {
	_, _ = kafkastore.New(primary, kafkastore.WithBrokers("h:9092"), persister.WithGroupID("g"))
}`, "does not implement kafkastore.Option"},
		"an option from outside": {`type mine struct{}

func (mine) ApplyPersister(any) error { return nil }

func f() { _, _ = persister.New(primary, mine{}) }`, "does not implement persister.Option"},
	} {
		t.Run(name, func(t *testing.T) {
			errs := typeCheck(t, exports, header+tc.body+"\n")
			switch {
			case tc.wantErr == "" && len(errs) > 0:
				t.Errorf("does not compile: %s", strings.Join(errs, "; "))
			case tc.wantErr != "" && !strings.Contains(strings.Join(errs, "; "), tc.wantErr):
				t.Errorf("type errors %q, want one containing %q", errs, tc.wantErr)
			}
		})
	}
}

// The shared options configure the Persister as they configure the Store,
// and name themselves when they refuse a value.
func TestSharedOptionsApplyToBoth(t *testing.T) {
	logger := slog.New(slog.DiscardHandler)
	conn := kafkastore.Connection(kafkastore.WithBrokers("127.0.0.1:1", "127.0.0.1:2"),
		kafkastore.WithClientID("shared-id"), kafkastore.WithLogger(logger))
	p, err := New(memory.New(), conn)
	if err != nil {
		t.Fatal(err)
	}
	if c := p.cfg.conn; strings.Join(c.Brokers, ",") != "127.0.0.1:1,127.0.0.1:2" || c.ClientID != "shared-id" || c.Logger != logger {
		t.Errorf("persister settings %+v; want the brokers, client id and logger given", c)
	}
	if p.transport.ClientID != "shared-id" || p.dialer.ClientID != "shared-id" {
		t.Errorf("client ids: transport %q, dialer %q; want shared-id on both", p.transport.ClientID, p.dialer.ClientID)
	}
	s, err := kafkastore.New(memory.New(), conn, kafkastore.WithTopicCreation(false))
	if err != nil {
		t.Fatalf("kafkastore.New with the same settings: %v", err)
	}
	defer s.Close()

	for _, o := range []Option{kafkastore.WithBrokers(), kafkastore.Connection(kafkastore.WithClientID(""))} {
		_, perr := New(memory.New(), kafkastore.WithBrokers("127.0.0.1:1"), o)
		_, serr := kafkastore.New(memory.New(), kafkastore.WithBrokers("127.0.0.1:1"), o.(kafkastore.SharedOption))
		for _, err := range []error{perr, serr} {
			if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), "With") {
				t.Errorf("err = %v; want ErrConfig naming the option", err)
			}
		}
	}
}
