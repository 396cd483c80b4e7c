package codec_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/go-whisk/activationstore/codec"
	"github.com/go-whisk/activationstore/store"
)

const vectors = "testdata/vectors"

func readVector(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(vectors, name))
	if err != nil {
		t.Fatalf("read vector: %v", err)
	}
	return b
}

// semantic parses JSON keeping numbers exact, for order-free comparison.
func semantic(t testing.TB, b []byte) any {
	t.Helper()
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, short(b))
	}
	if d.More() {
		t.Fatalf("trailing data after JSON value")
	}
	return v
}

func short(b []byte) string {
	if len(b) > 2000 {
		return string(b[:2000]) + "…"
	}
	return string(b)
}

func assertJSONEqual(t testing.TB, want, got []byte) {
	t.Helper()
	if !reflect.DeepEqual(semantic(t, want), semantic(t, got)) {
		var w, g bytes.Buffer
		_ = json.Compact(&w, want)
		_ = json.Compact(&g, got)
		t.Fatalf("JSON differs\nwant: %s\n got: %s", short(w.Bytes()), short(g.Bytes()))
	}
}

// vectorFiles lists every .json file under testdata/vectors, relative.
func vectorFiles(t testing.TB) []string {
	t.Helper()
	var files []string
	err := filepath.WalkDir(vectors, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && strings.HasSuffix(p, ".json") {
			rel, _ := filepath.Rel(vectors, p)
			files = append(files, filepath.ToSlash(rel))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 50 {
		t.Fatalf("found only %d vectors under %s; was the copy of the vectors lost?", len(files), vectors)
	}
	return files
}

// notCodecFormats are vectors of formats other packages own (design
// documents, HTTP queries) or that this package checks in dedicated tests.
var notCodecFormats = map[string]string{
	"couchdb/activations_design_document_for_activations_db.json":           "design document (primary/couchdb)",
	"couchdb/logCleanup_design_document_for_activations_db.json":            "design document (primary/couchdb)",
	"couchdb/whisks_design_document_for_activations_db_filters_v2.1.0.json": "design document (primary/couchdb)",
	"couchdb/whisks_design_document_for_activations_db_filters_v2.1.1.json": "design document (primary/couchdb)",
	"couchdb/whisks_design_document_for_activations_db_v2.1.0.json":         "design document (primary/couchdb)",
	"couchdb/query_examples.json":                                           "HTTP queries (primary/couchdb)",
	"couchdb/document_handler_view_cases.json":                              "view emulation cases (primary/memory)",
	"misc/persister_test_scenarios.json":                                    "persister scenarios (kafkastore); its unknown record is in TestDecodeRejectsNonRecords",
	"misc/transaction_id_cases.json":                                        "TestTransactionIDCases",
	"misc/activation_id_cases.json":                                         "TestActivationIDCases",
	"couchdb/view_rows_for_wa_document_couchdb.json":                        "TestGoldenViewRows",
	"couchdb/view_rows_for_trigger.json":                                    "TestGoldenViewRows",
	"misc/activation_message_master.json":                                   "TestDecodeRejectsNonRecords",
	"misc/activation_message_pr_base_with_cause.json":                       "TestDecodeRejectsNonRecords",
	"misc/event_activation_compat.json":                                     "TestDecodeRejectsNonRecords",
	"misc/event_activation_user_status_compat.json":                         "TestDecodeRejectsNonRecords",
}

// TestGoldenVectors decodes every vector in the form it is in, re-encodes
// it in the same form and compares the JSON semantically.
func TestGoldenVectors(t *testing.T) {
	withActivation := map[string]bool{"ack-combined-activation.json": true, "ack-result-activation.json": true}
	for _, name := range vectorFiles(t) {
		t.Run(name, func(t *testing.T) {
			b := readVector(t, name)
			base := filepath.Base(name)
			switch {
			case notCodecFormats[name] != "":
				return
			case strings.HasPrefix(name, "reject-"):
				m, err := codec.Decode(b)
				assertMalformed(t, err)
				if m != nil {
					t.Fatalf("Decode returned a message with an error: %#v", m)
				}
			case strings.HasPrefix(name, "activation-"):
				a, err := codec.UnmarshalActivation(b)
				if err != nil {
					t.Fatal(err)
				}
				got, err := codec.MarshalActivation(a)
				if err != nil {
					t.Fatal(err)
				}
				assertJSONEqual(t, b, got)
				m, err := codec.Decode(b)
				if err != nil {
					t.Fatal(err)
				}
				rec, ok := m.(*codec.ActivationRecord)
				if !ok {
					t.Fatalf("Decode gave %T, want *codec.ActivationRecord", m)
				}
				if !reflect.DeepEqual(rec.Activation(), a) {
					t.Fatalf("Decode and UnmarshalActivation disagree:\n%#v\n%#v", rec.Activation(), a)
				}
				got, err = codec.Marshal(m)
				if err != nil {
					t.Fatal(err)
				}
				assertJSONEqual(t, b, got)
			case strings.HasPrefix(name, "ack-"):
				m := decodeRoundTrip(t, b)
				if got := m.Activation() != nil; got != withActivation[name] {
					t.Fatalf("Activation() != nil is %v, want %v", got, withActivation[name])
				}
			case strings.HasPrefix(name, "acks/"):
				m := decodeRoundTrip(t, b)
				checkAckKind(t, base, m)
			case base == "activation_response_compat.json":
				r, err := codec.UnmarshalResponse(b)
				if err != nil {
					t.Fatal(err)
				}
				got, err := codec.MarshalResponse(r)
				if err != nil {
					t.Fatal(err)
				}
				assertJSONEqual(t, b, got)
			case strings.HasPrefix(base, "wa_api_") || strings.HasSuffix(base, "_api_extended.json"):
				a, err := codec.UnmarshalExtended(b)
				if err != nil {
					t.Fatal(err)
				}
				got, err := codec.MarshalExtended(a)
				if err != nil {
					t.Fatal(err)
				}
				assertJSONEqual(t, b, got)
			case base == "wa_document_couchdb.json":
				doc, err := codec.UnmarshalDocument(b)
				if err != nil {
					t.Fatal(err)
				}
				if doc.ID != doc.Activation.DocID() || doc.EntityType != "activation" || doc.Rev != "" {
					t.Fatalf("document header %q %q %q", doc.ID, doc.EntityType, doc.Rev)
				}
				got, err := doc.MarshalJSON()
				if err != nil {
					t.Fatal(err)
				}
				assertJSONEqual(t, b, got)
				got, err = codec.MarshalDocument(doc.Activation, doc.Updated)
				if err != nil {
					t.Fatal(err)
				}
				assertJSONEqual(t, b, got)
			case strings.HasPrefix(name, "activations/"):
				a, err := codec.UnmarshalActivation(b)
				if err != nil {
					t.Fatal(err)
				}
				got, err := codec.MarshalActivation(a)
				if err != nil {
					t.Fatal(err)
				}
				assertJSONEqual(t, b, got)
				m, err := codec.Decode(b)
				if err != nil {
					t.Fatal(err)
				}
				if !reflect.DeepEqual(m.Activation(), a) {
					t.Fatal("Decode and UnmarshalActivation disagree")
				}
			case strings.HasPrefix(name, "extra/"):
				// extra vectors live beside, in testdata/extra
			default:
				t.Fatalf("vector %s is not covered by any test: classify it", name)
			}
		})
	}
}

func decodeRoundTrip(t *testing.T, b []byte) codec.Message {
	t.Helper()
	m, err := codec.Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	got, err := codec.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	assertJSONEqual(t, b, got)
	again, err := codec.Decode(got)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(m, again) {
		t.Fatalf("decode(encode(m)) != m:\n%#v\n%#v", m, again)
	}
	return m
}

func checkAckKind(t *testing.T, base string, m codec.Message) {
	t.Helper()
	left := strings.Contains(base, "_left")
	switch {
	case strings.HasPrefix(base, "result_"):
		r, ok := m.(*codec.ResultMessage)
		if !ok {
			t.Fatalf("got %T, want *codec.ResultMessage", m)
		}
		if left != (r.Response == nil) || left != (r.ActivationID != "") {
			t.Fatalf("left=%v but Response=%v ActivationID=%q", left, r.Response != nil, r.ActivationID)
		}
	case strings.Contains(base, "_completion"):
		c, ok := m.(*codec.CompletionMessage)
		if !ok {
			t.Fatalf("got %T, want *codec.CompletionMessage", m)
		}
		if c.ActivationID != "be97c2fed5dc43d097c2fed5dc73d085" || m.Activation() != nil {
			t.Fatalf("completion %+v", c)
		}
		checkInstance(t, base, c.Era, c.Instance)
	case strings.Contains(base, "_combined_"):
		c, ok := m.(*codec.CombinedMessage)
		if !ok {
			t.Fatalf("got %T, want *codec.CombinedMessage", m)
		}
		if left != (c.Response == nil) || left != (c.ActivationID != "") {
			t.Fatalf("left=%v but Response=%v ActivationID=%q", left, c.Response != nil, c.ActivationID)
		}
		wantSys := strings.Contains(base, "system_error")
		if c.IsSystemError == nil || *c.IsSystemError != wantSys {
			t.Fatalf("isSystemError = %v, want %v", c.IsSystemError, wantSys)
		}
		if c.Response != nil && (c.Response.Response.StatusCode == store.StatusWhiskError) != wantSys {
			t.Fatalf("status code %d disagrees with isSystemError", c.Response.Response.StatusCode)
		}
		checkInstance(t, base, c.Era, c.Instance)
	default:
		t.Fatalf("unclassified ack vector %s", base)
	}
}

func checkInstance(t *testing.T, base string, era codec.Era, in codec.InstanceID) {
	t.Helper()
	wantEra := codec.EraMaster
	if strings.HasPrefix(base, "v1_") {
		wantEra = codec.EraPR
	}
	if era != wantEra {
		t.Fatalf("era %v, want %v", era, wantEra)
	}
	if !in.IsInvoker() {
		t.Fatalf("instance %+v is not an invoker", in)
	}
	switch {
	case strings.HasPrefix(base, "v1_") && in.Type != "",
		!strings.HasPrefix(base, "v1_") && in.Type != "invoker",
		strings.HasPrefix(base, "v3_") && (in.Tags == nil || in.DedicatedNamespaces == nil):
		t.Fatalf("instance %+v does not have the %s shape", in, base[:2])
	}
	switch base {
	case "v3_combined_right_invoker_named.json":
		want := codec.InstanceID{Type: "invoker", Instance: 3, UniqueName: "invoker-3-abcde", DisplayedName: "invoker3",
			UserMemory: "2048 MB", BusyMemory: "512 MB", Tags: []string{"gpu"}, DedicatedNamespaces: []string{"guest"}, Raw: in.Raw}
		if !reflect.DeepEqual(in, want) {
			t.Fatalf("instance\n got %+v\nwant %+v", in, want)
		}
	case "v1_combined_right_pr_test_invoker1.json":
		if in.Instance != 1 || in.UserMemory != "1 MB" {
			t.Fatalf("instance %+v, want invoker 1 with 1 MB", in)
		}
	}
}

func assertMalformed(t testing.TB, err error) *codec.Error {
	t.Helper()
	if err == nil {
		t.Fatal("want an error, got nil")
	}
	if !errors.Is(err, codec.ErrMalformed) {
		t.Fatalf("errors.Is(%v, ErrMalformed) is false", err)
	}
	var ce *codec.Error
	if !errors.As(err, &ce) {
		t.Fatalf("error %T is not a *codec.Error", err)
	}
	if ce.Reason == "" || !strings.HasPrefix(err.Error(), "codec: ") {
		t.Fatalf("error %q says nothing", err)
	}
	return ce
}

// TestRejectVectors checks what each documented rejection says.
func TestRejectVectors(t *testing.T) {
	cases := []struct{ file, field, reason string }{
		{"reject-activation-bad-start.json", "start", `timestamp "not-a-time" is malformed`},
		{"reject-not-an-object.json", "", "want a JSON object"},
		{"reject-result-activation-missing-fields.json", "response.subject", "missing required member"},
		{"reject-result-response-number.json", "response", "want a JSON object or activation id string, got number"},
	}
	for _, c := range cases {
		t.Run(c.file, func(t *testing.T) {
			_, err := codec.Decode(readVector(t, c.file))
			ce := assertMalformed(t, err)
			if ce.Field != c.field || !strings.Contains(ce.Reason, c.reason) {
				t.Fatalf("got %q (field %q), want field %q and reason containing %q", err, ce.Field, c.field, c.reason)
			}
		})
	}
	if got := "codec: response: want a JSON object or activation id string, got number"; true {
		_, err := codec.Decode(readVector(t, "reject-result-response-number.json"))
		if err.Error() != got {
			t.Fatalf("error text %q, want %q", err, got)
		}
	}
}

// TestGoldenCrossForms checks the built vectors against the forms they were
// derived from: extended and document forms of the compat activation, the
// extended trigger, and the view rows.
func TestGoldenCrossForms(t *testing.T) {
	compat, err := codec.UnmarshalActivation(readVector(t, "activations/wa_compat_success.json"))
	if err != nil {
		t.Fatal(err)
	}
	ext, err := codec.MarshalExtended(compat)
	if err != nil {
		t.Fatal(err)
	}
	assertJSONEqual(t, readVector(t, "activations/wa_api_extended_from_compat.json"), ext)

	doc, err := codec.MarshalDocument(compat, time.UnixMilli(1570013740010))
	if err != nil {
		t.Fatal(err)
	}
	assertJSONEqual(t, readVector(t, "activations/wa_document_couchdb.json"), doc)

	trigger, err := codec.UnmarshalActivation(readVector(t, "activations/wa_trigger_end_epoch.json"))
	if err != nil {
		t.Fatal(err)
	}
	if !trigger.End.Equal(store.NoEnd) || trigger.HasEnd() || trigger.Duration != nil {
		t.Fatalf("trigger end %v duration %v: want store.NoEnd and no duration", trigger.End, trigger.Duration)
	}
	ext, err = codec.MarshalExtended(trigger)
	if err != nil {
		t.Fatal(err)
	}
	assertJSONEqual(t, readVector(t, "activations/wa_trigger_api_extended.json"), ext)
}

func TestGoldenViewRows(t *testing.T) {
	cases := []struct{ rows, doc string }{
		{"couchdb/view_rows_for_wa_document_couchdb.json", "activations/wa_document_couchdb.json"},
		{"couchdb/view_rows_for_trigger.json", "activations/wa_trigger_end_epoch.json"},
	}
	for _, c := range cases {
		t.Run(c.rows, func(t *testing.T) {
			var rows map[string]json.RawMessage
			if err := json.Unmarshal(readVector(t, c.rows), &rows); err != nil {
				t.Fatal(err)
			}
			full, err := codec.UnmarshalActivation(readVector(t, c.doc))
			if err != nil {
				t.Fatal(err)
			}
			fromDoc, err := codec.MarshalSummary(full.Summary())
			if err != nil {
				t.Fatal(err)
			}
			n := 0
			for _, view := range []string{"whisks.v2.1.0/activations", "whisks-filters.v2.1.1/activations"} {
				var row struct{ Value json.RawMessage }
				if err := json.Unmarshal(rows[view], &row); err != nil {
					t.Fatal(err)
				}
				a, err := codec.UnmarshalSummary(row.Value)
				if err != nil {
					t.Fatal(err)
				}
				got, err := codec.MarshalSummary(a)
				if err != nil {
					t.Fatal(err)
				}
				assertJSONEqual(t, row.Value, got)
				// the view computes what store.Activation.Summary computes
				assertJSONEqual(t, row.Value, fromDoc)
				if a.Subject != "" || a.Logs != nil || a.Response.Result != nil {
					t.Fatalf("summary carries subject, logs or result: %+v", a)
				}
				n++
			}
			if n != 2 {
				t.Fatalf("checked %d views", n)
			}
		})
	}
}

func TestTransactionIDCases(t *testing.T) {
	var file struct {
		Cases []struct {
			JSON         json.RawMessage `json:"json"`
			ID           string          `json:"id"`
			Start        int64           `json:"start"`
			ExtraLogging bool            `json:"extraLogging"`
			Parent       *struct {
				ID           string `json:"id"`
				Start        int64  `json:"start"`
				ExtraLogging bool   `json:"extraLogging"`
			} `json:"parent"`
		} `json:"cases"`
	}
	if err := json.Unmarshal(readVector(t, "misc/transaction_id_cases.json"), &file); err != nil {
		t.Fatal(err)
	}
	if len(file.Cases) != 3 {
		t.Fatalf("%d cases", len(file.Cases))
	}
	for _, c := range file.Cases {
		var tid codec.TransactionID
		if err := tid.UnmarshalJSON(c.JSON); err != nil {
			t.Fatal(err)
		}
		want := codec.TransactionID{ID: c.ID, Start: time.UnixMilli(c.Start).UTC(), ExtraLogging: c.ExtraLogging}
		if c.Parent != nil {
			want.Parent = &codec.TransactionID{ID: c.Parent.ID, Start: time.UnixMilli(c.Parent.Start).UTC(), ExtraLogging: c.Parent.ExtraLogging}
		}
		if !reflect.DeepEqual(tid, want) {
			t.Fatalf("%s: got %+v, want %+v", c.JSON, tid, want)
		}
		got, err := tid.MarshalJSON()
		if err != nil {
			t.Fatal(err)
		}
		assertJSONEqual(t, c.JSON, got)
	}
}

func TestActivationIDCases(t *testing.T) {
	var file struct {
		Cases []struct {
			Input       string `json:"input"`
			InputNumber string `json:"input_json_number"`
			Expect      string `json:"expect"`
			Message     string `json:"message"`
		} `json:"cases"`
	}
	if err := json.Unmarshal(readVector(t, "misc/activation_id_cases.json"), &file); err != nil {
		t.Fatal(err)
	}
	base := string(readVector(t, "activation-with-logs.json"))
	const id = `"5a0d7c1e2f3a4b5c8d9e0f1a2b3c4d5e"`
	for _, c := range file.Cases {
		lit, want := strconvQuote(c.Input), c.Input
		if c.InputNumber != "" {
			lit, want = c.InputNumber, c.InputNumber
		}
		b := []byte(strings.Replace(base, id, lit, 1))
		a, err := codec.UnmarshalActivation(b)
		if strings.HasPrefix(c.Expect, "accept") {
			if err != nil {
				t.Fatalf("%s: %v", lit, err)
			}
			if a.ActivationID != want {
				t.Fatalf("%s read as %q", lit, a.ActivationID)
			}
			continue
		}
		ce := assertMalformed(t, err)
		if ce.Field != "activationId" {
			t.Fatalf("%s: field %q", lit, ce.Field)
		}
		// OpenWhisk: "Activation id length is 35 but must be 32." / "The activation id is not valid."
		if strings.Contains(c.Message, "length") {
			if !strings.Contains(ce.Reason, "length is "+itoa(len(c.Input))+" but must be 32") {
				t.Fatalf("%s: reason %q, want the length", lit, ce.Reason)
			}
		} else if !strings.Contains(ce.Reason, "is not valid") {
			t.Fatalf("%s: reason %q", lit, ce.Reason)
		}
	}
}

func strconvQuote(s string) string { b, _ := json.Marshal(s); return string(b) }

func itoa(i int) string { b, _ := json.Marshal(i); return string(b) }

func TestDecodeRejectsNonRecords(t *testing.T) {
	cases := map[string][]byte{
		"persister unknown event": []byte(`{"foo": "bar"}`),
	}
	for _, f := range []string{"misc/activation_message_master.json", "misc/activation_message_pr_base_with_cause.json",
		"misc/event_activation_compat.json", "misc/event_activation_user_status_compat.json"} {
		cases[f] = readVector(t, f)
	}
	for name, b := range cases {
		m, err := codec.Decode(b)
		if m != nil {
			t.Fatalf("%s: decoded as %T", name, m)
		}
		assertMalformed(t, err)
	}
	// An ActivationMessage is not an ack: it has transid but no response.
	_, err := codec.Decode(readVector(t, "misc/activation_message_master.json"))
	if ce := assertMalformed(t, err); ce.Field != "response" {
		t.Fatalf("got %v", err)
	}
}

func TestExtraVectors(t *testing.T) {
	files, err := filepath.Glob("testdata/extra/*.json")
	if err != nil || len(files) < 10 {
		t.Fatalf("extra vectors: %v (%d files)", err, len(files))
	}
	for _, p := range files {
		name := filepath.Base(p)
		if strings.HasSuffix(name, ".want.json") {
			continue
		}
		t.Run(name, func(t *testing.T) {
			b, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			m, err := codec.Decode(b)
			if strings.HasPrefix(name, "reject-") {
				assertMalformed(t, err)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			want := b
			if w, err := os.ReadFile(strings.TrimSuffix(p, ".json") + ".want.json"); err == nil {
				want = w
			}
			got, err := codec.Marshal(m)
			if err != nil {
				t.Fatal(err)
			}
			assertJSONEqual(t, want, got)
			again, err := codec.Decode(got)
			if err != nil || !reflect.DeepEqual(again, m) {
				t.Fatalf("re-decode differs: %v", err)
			}
		})
	}
}
