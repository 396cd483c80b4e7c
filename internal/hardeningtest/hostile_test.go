package hardeningtest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/go-whisk/activationstore/internal/activationtest"
	"github.com/go-whisk/activationstore/internal/couchtest"
	"github.com/go-whisk/activationstore/internal/kafkatest"
	"github.com/go-whisk/activationstore/kafkastore"
	"github.com/go-whisk/activationstore/primary/couchdb"
	"github.com/go-whisk/activationstore/primary/memory"
	"github.com/go-whisk/activationstore/store"
)

// pad32 pads s with zeros to 32 bytes: an id of the right length that is
// wrong in its characters.
func pad32(s string) string {
	if len(s) >= store.ActivationIDLength {
		return s
	}
	return s + strings.Repeat("0", store.ActivationIDLength-len(s))
}

var big = strings.Repeat("a", 10<<10) // 10 KB

// hostileNamespaces escape a document id or a URL path, or only look like
// a valid namespace.
var hostileNamespaces = []string{
	"_design/x", "_design", "_local/x", "_all_docs", "_users",
	"../x", "..", ".", "a/../../b", "a/./b", "guest/..", "guest/",
	"/guest", "guest//x", "\x00", "guest\x00", "a\nb", "a\rb", "a\tb",
	big, "guest%2F_design%2Fx", "guest%2e%2e", "guest?rev=1", "guest#x",
	`guest\x`, " guest", "guest ",
	"gu\u0435st",    // Cyrillic е
	"guest\u2215x",  // division slash
	"guest\uff0fx",  // fullwidth solidus
	"\uff47uest",    // fullwidth g
	"guest\u200b",   // zero-width space
	"guest\u202e",   // right-to-left override
	"guest\xff\xfe", // invalid UTF-8
}

// hostileIDs are not 32 lowercase hexadecimal characters.
var hostileIDs = []string{
	"", "../x", pad32("../"), pad32("_design/"), "_design/x",
	pad32("a/b"), pad32("a%2Fb"), pad32("%2F..%2F"), pad32("\x00"), pad32("a\nb"),
	strings.Repeat("z", 32), "0123456789ABCDEF0123456789ABCDEF", "0123456789abcdef0123456789abcdeF",
	strings.Repeat("a", 31), strings.Repeat("a", 33), strings.Repeat("a", 64), big,
	pad32("\u0430"),                         // Cyrillic а: 32 bytes, 31 characters
	"0123456789abcdef0123456789abcde\u0435", // 32 characters, 33 bytes
	pad32("\uff10"),                         // fullwidth 0
	pad32(" "), pad32("-"), "0123456789abcdef-0123456789abcde",
}

// hostileNames are invalid as an activation's action name.
var hostileNames = []string{
	"", "_design/x", "_design", "../x", "..", ".", "a/../../b", "x/y",
	"\x00", "a\nb", big, "hell\u043e", "a%2Fb", " x",
}

// hostileQueryNames are invalid as a query's name ("action" or "pkg/action").
var hostileQueryNames = []string{
	"_design/x", "../x", "a/../../b", "a/b/c", "pkg/", "/x", "pkg//x",
	"\x00", "a\nb", big, "x%2F..%2Fy", "hell\u043e", "pkg/_design",
}

// rejection counts the hostile calls that were refused properly.
type rejection struct{ calls int }

// expectInvalid asserts err is store.ErrInvalid from a *store.InvalidError
// naming field.
func (r *rejection) expectInvalid(t *testing.T, op, field, value string, err error) {
	t.Helper()
	r.calls++
	shown := value
	if len(shown) > 40 {
		shown = shown[:40] + "…"
	}
	if !errors.Is(err, store.ErrInvalid) {
		t.Errorf("%s with %s %q: %v; want store.ErrInvalid", op, field, shown, err)
		return
	}
	var ie *store.InvalidError
	if !errors.As(err, &ie) || ie.Field != field {
		t.Errorf("%s with %s %q: %#v; want a *store.InvalidError naming %q", op, field, shown, err, field)
	}
}

// tryHostile sends every hostile input through every method of s, expecting
// each to be refused as invalid. It returns the number of calls.
func tryHostile(t *testing.T, s store.Store) int {
	t.Helper()
	ctx := ctxFor(t, time.Minute)
	uc := store.UserContext{}
	var r rejection
	var batch []*store.Activation
	okID := activationtest.New("guest").ActivationID
	for _, ns := range hostileNamespaces {
		a := activationtest.New("guest")
		a.Namespace = ns
		batch = append(batch, a)
		_, err := s.Store(ctx, a, uc)
		r.expectInvalid(t, "Store", "namespace", ns, err)
		_, err = s.Get(ctx, ns, okID, uc)
		r.expectInvalid(t, "Get", "namespace", ns, err)
		r.expectInvalid(t, "Delete", "namespace", ns, s.Delete(ctx, ns, okID, uc))
		_, err = s.List(ctx, store.Query{Namespace: ns}, uc)
		r.expectInvalid(t, "List", "namespace", ns, err)
		_, err = s.List(ctx, store.Query{Namespace: ns, Name: "hello", IncludeDocs: true}, uc)
		r.expectInvalid(t, "List", "namespace", ns, err)
		_, err = s.Count(ctx, store.Query{Namespace: ns}, uc)
		r.expectInvalid(t, "Count", "namespace", ns, err)
	}
	for _, id := range hostileIDs {
		a := activationtest.New("guest")
		a.ActivationID = id
		batch = append(batch, a)
		_, err := s.Store(ctx, a, uc)
		r.expectInvalid(t, "Store", "activationId", id, err)
		_, err = s.Get(ctx, "guest", id, uc)
		r.expectInvalid(t, "Get", "activationId", id, err)
		r.expectInvalid(t, "Delete", "activationId", id, s.Delete(ctx, "guest", id, uc))
		if id != "" { // an empty cause means none
			c := activationtest.New("guest")
			c.Cause = id
			batch = append(batch, c)
			_, err = s.Store(ctx, c, uc)
			r.expectInvalid(t, "Store", "cause", id, err)
		}
	}
	for _, name := range hostileNames {
		a := activationtest.New("guest")
		a.Name = name
		batch = append(batch, a)
		_, err := s.Store(ctx, a, uc)
		r.expectInvalid(t, "Store", "name", name, err)
	}
	for _, name := range hostileQueryNames {
		_, err := s.List(ctx, store.Query{Namespace: "guest", Name: name}, uc)
		r.expectInvalid(t, "List", "name", name, err)
		_, err = s.Count(ctx, store.Query{Namespace: "guest", Name: name}, uc)
		r.expectInvalid(t, "Count", "name", name, err)
	}
	if bs, ok := s.(store.BatchStorer); ok {
		res, err := bs.StoreBatch(ctx, batch, uc)
		if err != nil {
			t.Errorf("StoreBatch of %d hostile records: %v; want a result per record", len(batch), err)
		}
		for i, br := range res {
			if !errors.Is(br.Err, store.ErrInvalid) {
				t.Errorf("StoreBatch record %d (%s): %v; want store.ErrInvalid", i, batch[i].DocID(), br.Err)
			}
		}
		r.calls += len(batch)
	}
	return r.calls
}

// couchTotalRows is _all_docs' total_rows: every document, design ones included.
func couchTotalRows(t *testing.T, base, db string) int {
	t.Helper()
	status, body, err := couchtest.Do(ctxFor(t, 30*time.Second), http.MethodGet, base, "/"+url.PathEscape(db)+"/_all_docs?limit=0", nil)
	if err != nil || status != http.StatusOK {
		t.Fatalf("_all_docs of %s: %d %s %v", db, status, body, err)
	}
	var r struct {
		TotalRows int `json:"total_rows"`
	}
	if err := json.Unmarshal(body, &r); err != nil {
		t.Fatalf("_all_docs reply %s: %v", body, err)
	}
	return r.TotalRows
}

// newCountingCouch opens a CouchDB store in a fresh database whose requests
// are counted.
func newCountingCouch(t *testing.T) (*couchdb.Store, *countingTransport, string) {
	t.Helper()
	client, ct, closeIdle := newCountingClient()
	t.Cleanup(closeIdle)
	db := couchtest.DBName(t)
	s, err := couchdb.New(ctxFor(t, 30*time.Second), couchtest.URL(t), db, couchdb.WithHTTPClient(client))
	if err != nil {
		t.Fatalf("couchdb.New: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s, ct, db
}

func sumOffsets(t *testing.T, b *kafkatest.Broker, topic string) int64 {
	t.Helper()
	offs, err := b.EndOffsets(ctxFor(t, 10*time.Second), topic)
	if err != nil {
		t.Fatalf("end offsets of %s: %v", topic, err)
	}
	var n int64
	for _, o := range offs {
		n += o
	}
	return n
}

func TestHostileInputRejected(t *testing.T) {
	var summary []string

	t.Run("memory", func(t *testing.T) {
		mem := memory.New()
		if _, err := mem.Store(context.Background(), activationtest.New("guest"), store.UserContext{}); err != nil {
			t.Fatal(err)
		}
		calls := tryHostile(t, mem)
		if n := mem.Len(); n != 1 {
			t.Errorf("memory store holds %d records after hostile input, want 1", n)
		}
		summary = append(summary, fmt.Sprintf("memory %d calls refused, records 1→%d", calls, mem.Len()))
	})

	t.Run("couchdb", func(t *testing.T) {
		cs, ct, db := newCountingCouch(t)
		base := couchtest.URL(t)
		if _, err := cs.Store(context.Background(), activationtest.New("guest"), store.UserContext{}); err != nil {
			t.Fatal(err)
		}
		rowsBefore := couchTotalRows(t, base, db)
		ct.n.Store(0)
		calls := tryHostile(t, cs)
		sent := ct.n.Load()
		if sent != 0 {
			t.Errorf("%d HTTP requests reached CouchDB for hostile input, want 0", sent)
		}
		rowsAfter := couchTotalRows(t, base, db)
		if rowsAfter != rowsBefore {
			t.Errorf("_all_docs total_rows %d → %d after hostile input", rowsBefore, rowsAfter)
		}
		// The counter sees real requests: a valid read goes out.
		if _, err := cs.Count(context.Background(), store.Query{Namespace: "guest"}, store.UserContext{}); err != nil || ct.n.Load() == 0 {
			t.Errorf("valid Count: %v, %d requests counted; the counting transport is not in use", err, ct.n.Load())
		}
		summary = append(summary, fmt.Sprintf("couchdb %d calls refused, %d requests sent, total_rows %d→%d", calls, sent, rowsBefore, rowsAfter))
	})

	b := kafkatest.Start(t)
	for _, inPrimary := range []bool{false, true} {
		name := "kafkastore"
		if inPrimary {
			name += "+store-in-primary"
		}
		t.Run(name, func(t *testing.T) {
			cs, ct, db := newCountingCouch(t)
			base := couchtest.URL(t)
			topic := kafkatest.Topic(t, "completed-hostile")
			ks, err := kafkastore.New(cs, kafkastore.WithBrokers(b.Addr()), kafkastore.WithTopic(topic),
				kafkastore.WithTopicPartitions(2), kafkastore.WithStoreInPrimary(inPrimary))
			if err != nil {
				t.Fatalf("kafkastore.New: %v", err)
			}
			defer ks.Close()
			if _, err := ks.Store(context.Background(), activationtest.New("guest"), store.UserContext{}); err != nil {
				t.Fatal(err)
			}
			offBefore, rowsBefore := sumOffsets(t, b, topic), couchTotalRows(t, base, db)
			ct.n.Store(0)
			calls := tryHostile(t, ks)
			sent := ct.n.Load()
			offAfter, rowsAfter := sumOffsets(t, b, topic), couchTotalRows(t, base, db)
			if offAfter != offBefore {
				t.Errorf("topic end offsets moved %d → %d: hostile records were published", offBefore, offAfter)
			}
			if sent != 0 || rowsAfter != rowsBefore {
				t.Errorf("hostile input reached CouchDB: %d requests, total_rows %d → %d", sent, rowsBefore, rowsAfter)
			}
			if st := ks.Stats(); st.Invalid == 0 {
				t.Errorf("Stats.Invalid = 0 after hostile Store calls")
			}
			// The end offsets do move for a valid record.
			if _, err := ks.Store(context.Background(), activationtest.New("guest"), store.UserContext{}); err != nil {
				t.Fatal(err)
			}
			if got := sumOffsets(t, b, topic); got != offAfter+1 {
				t.Errorf("end offsets %d after one valid Store, want %d", got, offAfter+1)
			}
			summary = append(summary, fmt.Sprintf("%s %d calls refused, end offsets %d→%d, %d CouchDB requests, total_rows %d→%d",
				name, calls, offBefore, offAfter, sent, rowsBefore, rowsAfter))
		})
	}
	t.Logf("SUMMARY TestHostileInputRejected: %s", strings.Join(summary, "; "))
}
