package codec_test

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/go-whisk/activationstore/codec"
	"github.com/go-whisk/activationstore/store"
)

func compatActivation(t *testing.T) *store.Activation {
	t.Helper()
	a, err := codec.UnmarshalActivation(readVector(t, "activations/wa_compat_success.json"))
	if err != nil {
		t.Fatal(err)
	}
	return a
}

var testingTID = codec.TransactionID{ID: "sid_testing", Start: time.UnixMilli(1570013740000).UTC()}

func roundTrip(t *testing.T, m codec.Message) codec.Message {
	t.Helper()
	b, err := codec.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	got, err := codec.Decode(b)
	if err != nil {
		t.Fatalf("%v\n%s", err, b)
	}
	// a decoded instance keeps its raw JSON; a constructed one has none
	switch g := got.(type) {
	case *codec.CompletionMessage:
		g.Instance.Raw = m.(*codec.CompletionMessage).Instance.Raw
	case *codec.CombinedMessage:
		g.Instance.Raw = m.(*codec.CombinedMessage).Instance.Raw
	}
	if !reflect.DeepEqual(got, m) {
		t.Fatalf("round trip differs:\n got %#v\nwant %#v", got, m)
	}
	return got
}

// Ports of AcknowledgementMessageTests.
func TestAcknowledgementMessages(t *testing.T) {
	a := compatActivation(t)
	invoker := codec.InstanceID{Type: "invoker", Instance: 0, UserMemory: "1024 MB", Tags: []string{}, DedicatedNamespaces: []string{}}

	t.Run("result with Left result", func(t *testing.T) {
		m := (&codec.ResultMessage{TransID: testingTID, Response: a}).Shrink()
		if m.Activation() != nil || m.ActivationID != a.ActivationID {
			t.Fatalf("shrunk message %+v", m)
		}
		b, err := codec.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		assertJSONEqual(t, []byte(`{"transid":["sid_testing",1570013740000],"response":"be97c2fed5dc43d097c2fed5dc73d085"}`), b)
		assertJSONEqual(t, readVector(t, "acks/result_left.json"), b)
		roundTrip(t, m)
	})
	t.Run("result with Right result", func(t *testing.T) {
		b, err := codec.MarshalResultMessage(testingTID, a)
		if err != nil {
			t.Fatal(err)
		}
		assertJSONEqual(t, readVector(t, "acks/result_right.json"), b)
		roundTrip(t, &codec.ResultMessage{TransID: testingTID, Response: a})
	})
	t.Run("completion", func(t *testing.T) {
		m := codec.NewCompletionMessage(testingTID, a, invoker)
		if m.Activation() != nil || m.IsSystemError == nil || *m.IsSystemError {
			t.Fatalf("completion %+v", m)
		}
		roundTrip(t, m)
	})
	t.Run("combined", func(t *testing.T) {
		m := codec.NewCombinedMessage(testingTID, a, invoker)
		if *m.IsSystemError {
			t.Fatal("success gave isSystemError true")
		}
		roundTrip(t, m)
		failed := a.Clone()
		failed.Response = store.Response{StatusCode: store.StatusWhiskError, Result: []byte(`{"error":"error"}`)}
		failed.Logs = []string{} // Clone turns empty logs into nil; decoding gives empty
		m = codec.NewCombinedMessage(testingTID, failed, invoker)
		if !*m.IsSystemError {
			t.Fatal("whisk error gave isSystemError false")
		}
		roundTrip(t, m)
		shrunk := m.Shrink()
		if shrunk.Activation() != nil || !*shrunk.IsSystemError {
			t.Fatalf("shrink lost isSystemError: %+v", shrunk)
		}
		roundTrip(t, shrunk)
		b, err := codec.Marshal(shrunk)
		if err != nil {
			t.Fatal(err)
		}
		assertJSONEqual(t, readVector(t, "acks/v3_combined_left_system_error.json"), b)
	})
	t.Run("PR-era key and instance shapes", func(t *testing.T) {
		m := codec.NewCombinedMessage(testingTID, a, codec.InstanceID{Instance: 1, UserMemory: "1 MB"})
		m.Era = codec.EraPR
		b, err := codec.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		assertJSONEqual(t, readVector(t, "acks/v1_combined_right_pr_test_invoker1.json"), b)
		// a controller and an unknown instance shape are accepted and kept
		for _, inst := range []string{`{"asString":"0","instanceType":"controller"}`, `{"asString":"sched0","instanceType":"scheduler","extra":[1,2]}`, `"weird"`} {
			rec := `{"transid":["t",1],"response":` + string(mustMarshal(t, a)) + `,"instance":` + inst + `}`
			got, err := codec.Decode([]byte(rec))
			if err != nil {
				t.Fatal(err)
			}
			c, ok := got.(*codec.CombinedMessage)
			if !ok || c.Activation() == nil || string(c.Instance.Raw) != inst {
				t.Fatalf("%s: got %#v", inst, got)
			}
			again, _ := codec.Marshal(got)
			assertJSONEqual(t, []byte(rec), again)
		}
		b, _ = codec.Marshal(&codec.CompletionMessage{TransID: testingTID, ActivationID: a.ActivationID,
			Instance: codec.InstanceID{Type: "controller", AsString: "0"}})
		assertJSONEqual(t, []byte(`{"transid":["sid_testing",1570013740000],"activationId":"be97c2fed5dc43d097c2fed5dc73d085","instance":{"asString":"0","instanceType":"controller"}}`), b)
	})
	t.Run("cross-version dispatch", func(t *testing.T) {
		// OpenWhisk master would read a PR-era combined message as a result
		// and reject a PR-era completion; this codec reads both as sent.
		m, err := codec.Decode(readVector(t, "acks/v1_completion.json"))
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := m.(*codec.CompletionMessage); !ok {
			t.Fatalf("got %T", m)
		}
	})
}

func mustMarshal(t *testing.T, a *store.Activation) []byte {
	t.Helper()
	b, err := codec.MarshalActivation(a)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Ports of TransactionIdTests and SchemaTests' transid cases, plus the
// reader's fallback to the unknown transaction.
func TestTransactionIDShapes(t *testing.T) {
	read := func(s string) codec.TransactionID {
		var tid codec.TransactionID
		if err := tid.UnmarshalJSON([]byte(s)); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
		return tid
	}
	ms := func(v int64) time.Time { return time.UnixMilli(v).UTC() }
	cases := map[string]codec.TransactionID{
		`["a",5]`:              {ID: "a", Start: ms(5)},
		`["a",5,true]`:         {ID: "a", Start: ms(5), ExtraLogging: true},
		`["a",5,false]`:        {ID: "a", Start: ms(5)},
		`["a",5.9]`:            {ID: "a", Start: ms(5)},
		`["a",1e30]`:           {ID: "a", Start: ms(5076944270305263616)}, // start.longValue: the low 64 bits of 10^30
		`["a",1e64]`:           {ID: "a", Start: ms(0)},
		`["a",5,"notatid"]`:    {ID: "a", Start: ms(5)}, // unreadable parent dropped
		`["a",5,true,["p",1]]`: {ID: "a", Start: ms(5), ExtraLogging: true, Parent: &codec.TransactionID{ID: "p", Start: ms(1)}},
		`["a",5,["p",1,true,["g",2]]]`: {ID: "a", Start: ms(5), Parent: &codec.TransactionID{ID: "p", Start: ms(1), ExtraLogging: true,
			Parent: &codec.TransactionID{ID: "g", Start: ms(2)}}},
	}
	for in, want := range cases {
		if got := read(in); !reflect.DeepEqual(got, want) {
			t.Fatalf("%s: got %+v, want %+v", in, got, want)
		}
	}
	for _, bad := range []string{`null`, `"x"`, `[]`, `["a"]`, `[1,2]`, `["a","b"]`, `["a",5,1,2]`, `["a",5,true,[],1]`, `{"id":"a"}`} {
		if got := read(bad); got.ID != codec.UnknownTransactionID || got.Start.UnixMilli() != 0 {
			t.Fatalf("%s: got %+v, want the unknown transaction", bad, got)
		}
	}
	var tid codec.TransactionID
	if err := tid.UnmarshalJSON([]byte(`["a",`)); !errors.Is(err, codec.ErrMalformed) {
		t.Fatalf("invalid JSON: %v", err)
	}
	b, _ := codec.TransactionID{ID: "a", Start: ms(5)}.MarshalJSON()
	if string(b) != `["a",5]` {
		t.Fatalf("wrote %s", b)
	}
	b, _ = codec.TransactionID{ID: "a", Start: ms(5), ExtraLogging: true}.MarshalJSON()
	if string(b) != `["a",5,true]` {
		t.Fatalf("wrote %s", b)
	}
	cyc := &codec.TransactionID{ID: "c"}
	cyc.Parent = cyc
	if _, err := cyc.MarshalJSON(); !errors.Is(err, store.ErrInvalid) {
		t.Fatalf("cycle: %v", err)
	}
}

// activationWith returns activation-with-logs.json with member key set to
// the raw JSON value (or removed when value is "").
func activationWith(t *testing.T, key, value string) []byte {
	t.Helper()
	var m map[string]any
	if err := jsonUnmarshalNumber(readVector(t, "activation-with-logs.json"), &m); err != nil {
		t.Fatal(err)
	}
	if value == "" {
		delete(m, key)
	} else {
		var v any
		if err := jsonUnmarshalNumber([]byte(value), &v); err != nil {
			t.Fatalf("%s: %v", value, err)
		}
		m[key] = v
	}
	return jsonMarshal(t, m)
}

// Ports of SchemaTests (EntityPath, EntityName, SemVer) through the codec.
func TestReaderValidation(t *testing.T) {
	accept := []struct{ key, in, want string }{
		{"namespace", `"/a"`, "a"}, {"namespace", `"//a//b//c"`, "a/b/c"}, {"namespace", `"a/b/"`, "a/b"},
		{"namespace", `"a@b.c/d"`, "a@b.c/d"}, {"namespace", `"_a/"`, "_a"}, {"namespace", `"_ _"`, "_ _"},
		{"name", `"a b"`, ""}, {"name", `"_"`, ""}, {"name", `"a@@"`, ""}, {"name", `"0.a"`, ""}, {"name", `"_a"`, ""},
		{"version", `"1"`, "1.0.0"}, {"version", `"1.2"`, "1.2.0"}, {"version", `"1.2.3."`, "1.2.3"},
		{"version", `"0.0.01"`, "0.0.1"}, {"version", `"01.02.003."`, "1.2.3"}, {"version", `"1.2.3.4"`, "1.2.3"},
		{"subject", `"abcde"`, "abcde"},
		{"start", `"2019-11-19T12:26:24.325Z"`, "1574166384325"}, {"start", `1574166384325.9`, "1574166384325"},
		{"start", `1.574166384325e12`, "1574166384325"},
		{"cause", `null`, ""}, {"duration", `null`, ""},
	}
	for _, c := range accept {
		a, err := codec.UnmarshalActivation(activationWith(t, c.key, c.in))
		if err != nil {
			t.Fatalf("%s %s: %v", c.key, c.in, err)
		}
		var got string
		switch c.key {
		case "namespace":
			got = a.Namespace
		case "version":
			got = a.Version
		case "subject":
			got = a.Subject
		case "start":
			got = itoa(int(a.Start.UnixMilli()))
		}
		if c.want != "" && got != c.want {
			t.Fatalf("%s %s read as %q, want %q", c.key, c.in, got, c.want)
		}
	}
	reject := []struct{ key, in, reason string }{
		{"namespace", `""`, "empty"}, {"namespace", `" "`, "segment"}, {"namespace", `"a/ "`, "segment"},
		{"namespace", `"//"`, "empty"}, {"namespace", `"a/b/ c"`, "segment"}, {"namespace", `"a/ /b"`, "segment"},
		{"namespace", `"xxx "`, "end with a space"}, {"namespace", `5`, "want a string, got number"},
		{"name", `" "`, "start"}, {"name", `"0 "`, "space"}, {"name", `"a  "`, "space"}, {"name", `"a \t"`, "contains"},
		{"name", `"a\n"`, "contains"}, {"name", `"/"`, "start"}, {"name", `"` + strings.Repeat("a", 257) + `"`, "longer"},
		{"version", `"0"`, "malformed"}, {"version", `"0.0.0"`, "malformed"}, {"version", `"00.00.00"`, "malformed"},
		{"version", `".1"`, "malformed"}, {"version", `"-1"`, "malformed"}, {"version", `"0.-1.0"`, "malformed"},
		{"version", `"0.0.-1"`, "malformed"}, {"version", `"xyz"`, "malformed"}, {"version", `""`, "malformed"},
		{"version", `null`, "got null"}, {"version", `1`, "got number"},
		{"subject", `"abcd"`, "shorter than 5"},
		{"start", `true`, "want epoch milliseconds"}, {"start", `"yesterday"`, "malformed"},
		{"end", `null`, "got null"}, {"end", "", "missing required member"},
		{"logs", `["a",1]`, "want a string, got number"}, {"logs", `"a"`, "want a JSON array"},
		{"publish", `"false"`, "want a boolean"},
		{"annotations", `[{"key":"k"}]`, "missing required member"}, {"annotations", `[{"value":1}]`, "missing required member"},
		{"annotations", `[{"key":null,"value":1}]`, "want a string, got null"}, {"annotations", `[1]`, "want a JSON object"},
		{"annotations", `{}`, "want a JSON array"},
		{"response", `{"result":{}}`, "missing required member"}, {"response", `"5a0d7c1e2f3a4b5c8d9e0f1a2b3c4d5e"`, "got an activation id string"},
		{"response", `{"statusCode":"0"}`, "want a number"},
		{"cause", `"x"`, "length is 1"}, {"activationId", `"5A0D7C1E2F3A4B5C8D9E0F1A2B3C4D5E"`, "not valid"},
		{"activationId", `1.5`, "not 32 digits"}, {"duration", `"5"`, "want a number"},
	}
	for _, c := range reject {
		_, err := codec.UnmarshalActivation(activationWith(t, c.key, c.in))
		ce := assertMalformed(t, err)
		if !strings.HasPrefix(ce.Field, c.key) || !strings.Contains(ce.Reason, c.reason) {
			t.Fatalf("%s %s: got %q (field %q), want field %s… and %q", c.key, c.in, err, ce.Field, c.key, c.reason)
		}
	}
}

func TestAnnotationsKeepOrderAndRaw(t *testing.T) {
	in := `[{"key":"z","value":{"b": 1.50, "a": "\u00e9"}},{"key":"a","value":null},{"key":"z","value":1e3,"init":true,"encryption":"aes"},{"key":"k","value":[ ],"foo":"bar"}]`
	base := string(readVector(t, "activation-with-logs.json"))
	rec := strings.Replace(base, `[{"key":"path","value":"guest/hello"},{"key":"kind","value":"python:3"}]`, in, 1)
	if rec == base {
		t.Fatal("vector changed")
	}
	a, err := codec.UnmarshalActivation([]byte(rec))
	if err != nil {
		t.Fatal(err)
	}
	want := []store.Annotation{
		{Key: "z", Value: []byte(`{"b":1.50,"a":"\u00e9"}`)},
		{Key: "a", Value: []byte(`null`)},
		{Key: "z", Value: []byte(`1e3`), Init: true, Encryption: "aes"},
		{Key: "k", Value: []byte(`[]`)},
	}
	if !reflect.DeepEqual(a.Annotations, want) {
		t.Fatalf("annotations\n got %+v\nwant %+v", a.Annotations, want)
	}
	if v, _ := a.Annotation("z"); string(v) != "1e3" {
		t.Fatalf("last z wins: %s", v)
	}
}

func TestRawValuesExactAndCompact(t *testing.T) {
	rec := `{"namespace":"guest","name":"a","subject":"guest","activationId":"5a0d7c1e2f3a4b5c8d9e0f1a2b3c4d5e",
	  "start":1,"end":2,"response":{"statusCode":0,"result":{ "n" : 1.000000000000000000001 , "s":"a\"b\u2028", "e":-0e-0 }},
	  "logs":["caf\u00e9 \ud83d\ude00","tab\tend"],"version":"0.0.1","publish":false,"annotations":[]}`
	a, err := codec.UnmarshalActivation([]byte(rec))
	if err != nil {
		t.Fatal(err)
	}
	if got := string(a.Response.Result); got != `{"n":1.000000000000000000001,"s":"a\"b\u2028","e":-0e-0}` {
		t.Fatalf("result %s", got)
	}
	if a.Logs[0] != "café 😀" || a.Logs[1] != "tab\tend" {
		t.Fatalf("logs %q", a.Logs)
	}
	b := mustMarshal(t, a)
	again, err := codec.UnmarshalActivation(b)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(a, again) {
		t.Fatal("round trip differs")
	}
	// invalid UTF-8 becomes U+FFFD, in strings and in raw values
	bad := strings.Replace(rec, "tab", "t\xffb", 1)
	bad = strings.Replace(bad, `"s":"a`, "\"s\":\"\xfe", 1)
	a, err = codec.UnmarshalActivation([]byte(bad))
	if err != nil {
		t.Fatal(err)
	}
	if a.Logs[1] != "t\uFFFDb\tend" || !strings.Contains(string(a.Response.Result), "\uFFFD") {
		t.Fatalf("not repaired: %q %q", a.Logs[1], a.Response.Result)
	}
}

func TestTimestamps(t *testing.T) {
	a, err := codec.UnmarshalActivation(activationWith(t, "end", "0"))
	if err != nil {
		t.Fatal(err)
	}
	if !a.End.Equal(store.NoEnd) || a.HasEnd() {
		t.Fatalf("end 0 read as %v", a.End)
	}
	a.Start = time.UnixMilli(0)
	b := mustMarshal(t, a)
	if !strings.Contains(string(b), `"start":0,`) || !strings.Contains(string(b), `"end":0,`) {
		t.Fatalf("epoch 0 not written as 0: %s", b)
	}
	// the zero time.Time is year 1, not epoch 0
	a.Start, a.End = time.Time{}, time.Time{}
	b = mustMarshal(t, a)
	if !strings.Contains(string(b), `"start":-62135596800000,`) || !strings.Contains(string(b), `"end":-62135596800000,`) {
		t.Fatalf("zero times not written as -62135596800000: %s", b)
	}
	a.Start = time.Unix(1, 999_999_999) // sub-millisecond precision is dropped
	if b = mustMarshal(t, a); !strings.Contains(string(b), `"start":1999,`) {
		t.Fatalf("%s", b)
	}
	a, err = codec.UnmarshalActivation(activationWith(t, "start", `-1.9`))
	if err != nil || a.Start.UnixMilli() != -1 {
		t.Fatalf("negative fraction: %v %v", a, err)
	}
}

func TestDecodeDispatch(t *testing.T) {
	act := string(readVector(t, "activation-with-logs.json"))
	cases := []struct {
		rec  string
		kind string
	}{
		{`{"transid":["t",1],"response":` + act + `}`, "*codec.ResultMessage"},
		{`{"transid":null,"response":"5a0d7c1e2f3a4b5c8d9e0f1a2b3c4d5e"}`, "*codec.ResultMessage"},
		{`{"transid":["t",1],"response":` + act + `,"instance":null}`, "*codec.ResultMessage"},
		{`{"transid":["t",1],"response":` + act + `,"invoker":{"instance":0,"userMemory":"1 MB"}}`, "*codec.CombinedMessage"},
		{`{"transid":["t",1],"activationId":"5a0d7c1e2f3a4b5c8d9e0f1a2b3c4d5e","instance":{}}`, "*codec.CompletionMessage"},
		{`{"transid":["t",1],"activationId":"5a0d7c1e2f3a4b5c8d9e0f1a2b3c4d5e","isSystemError":null,"invoker":{}}`, "*codec.CompletionMessage"},
		{act, "*codec.ActivationRecord"},
		{`{"_id":"guest/x","_rev":"1-a","entityType":"activation","updated":5,` + act[1:], "*codec.ActivationRecord"},
		// unknown members are ignored, in acks as in activations
		{`{"transid":["t",1],"response":"5a0d7c1e2f3a4b5c8d9e0f1a2b3c4d5e","namespace":42,"foo":[]}`, "*codec.ResultMessage"},
	}
	for _, c := range cases {
		m, err := codec.Decode([]byte(c.rec))
		if err != nil {
			t.Fatalf("%.80s: %v", c.rec, err)
		}
		if got := reflect.TypeOf(m).String(); got != c.kind {
			t.Fatalf("%.80s: got %s, want %s", c.rec, got, c.kind)
		}
		b, err := codec.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		again, err := codec.Decode(b)
		if err != nil || !reflect.DeepEqual(again, m) {
			t.Fatalf("re-decode: %v", err)
		}
	}
	rejects := []struct{ rec, field, reason string }{
		{``, "", "want a JSON object"},
		{`{}`, "", "found neither"},
		{`{"transid":["t",1]}`, "response", "missing required member"},
		{`{"transid":["t",1],"response":null}`, "response", "got null"},
		{`{"transid":["t",1],"response":[]}`, "response", "got array"},
		{`{"transid":["t",1],"response":"abc"}`, "response", "length is 3"},
		{`{"transid":["t",1],"instance":{}}`, "activationId", "missing required member"},
		{`{"transid":["t",1],"activationId":"5a0d7c1e2f3a4b5c8d9e0f1a2b3c4d5e","isSystemError":"no","instance":{}}`, "isSystemError", "want a boolean"},
		{`{"transid":["t",1],"response":{"namespace":"guest"}}`, "response.name", "missing required member"},
		{`{"transid":["t",1],"response":` + strings.Replace(act, `"statusCode":0`, `"statusCode":true`, 1) + `}`, "response.response.statusCode", "want a number, got boolean"},
		{`{"activationId":"5a0d7c1e2f3a4b5c8d9e0f1a2b3c4d5e"}`, "namespace", "missing required member"},
		{act + `x`, "", "after the top-level value"},
		{`{"transid":["t",1],"response":{"logs":["a` + "\x01" + `"]}}`, "response.logs[0]", "control character"},
		{`{"a":` + strings.Repeat("[", 2000) + strings.Repeat("]", 2000) + `}`, "a", "nesting deeper"},
		{`{"a":tru}`, "a", "invalid literal"},
		{`{"a":"\x"}`, "a", "invalid escape"},
		{`{"a":01}`, "", "want ',' or '}'"},
	}
	for _, c := range rejects {
		m, err := codec.Decode([]byte(c.rec))
		if m != nil {
			t.Fatalf("%.80s: got %T", c.rec, m)
		}
		ce := assertMalformed(t, err)
		if !strings.HasPrefix(ce.Field, c.field) || !strings.Contains(ce.Reason, c.reason) {
			t.Fatalf("%.80s: got %q (field %q), want field %q and %q", c.rec, err, ce.Field, c.field, c.reason)
		}
	}
}

func TestEncodeErrors(t *testing.T) {
	a := compatActivation(t)
	a.Response.Result = []byte(`{"a":`)
	if _, err := codec.MarshalActivation(a); !errors.Is(err, store.ErrInvalid) || !strings.Contains(err.Error(), "response.result") {
		t.Fatalf("got %v", err)
	}
	a = compatActivation(t)
	a.Annotations[1].Value = []byte(`{} {}`)
	if _, err := codec.MarshalResultMessage(testingTID, a); !errors.Is(err, store.ErrInvalid) || !strings.Contains(err.Error(), "annotations[1].value") {
		t.Fatalf("got %v", err)
	}
	a = compatActivation(t)
	a.Response.StatusCode = 7
	if _, err := codec.MarshalExtended(a); !errors.Is(err, store.ErrInvalid) {
		t.Fatalf("got %v", err)
	}
	if _, err := codec.MarshalActivation(nil); !errors.Is(err, store.ErrInvalid) {
		t.Fatalf("got %v", err)
	}
	if _, err := codec.Marshal(nil); !errors.Is(err, store.ErrInvalid) {
		t.Fatalf("got %v", err)
	}
	// pretty raw values are compacted; strings escaped
	a = compatActivation(t)
	a.Response.Result = []byte("{ \"a\" :\n [1, 2] }")
	a.Logs = []string{"quote\" backslash\\ nl\n ctl\x01 bad\xff <html>"}
	b := mustMarshal(t, a)
	if !strings.Contains(string(b), `"result":{"a":[1,2]}`) || !strings.Contains(string(b), `"quote\" backslash\\ nl\n ctl\u0001 bad\ufffd <html>"`) {
		t.Fatalf("%s", b)
	}
}

func TestUnmarshalDocument(t *testing.T) {
	b := readVector(t, "activations/wa_document_couchdb.json")
	doc, err := codec.UnmarshalDocument(b)
	if err != nil {
		t.Fatal(err)
	}
	doc.Rev = "1-abc"
	out, err := doc.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	again, err := codec.UnmarshalDocument(out)
	if err != nil || again.Rev != "1-abc" || again.Updated.UnixMilli() != 1570013740010 {
		t.Fatalf("%+v %v", again, err)
	}
	// WhiskEntityTests: a mismatching entityType is rejected, a missing one accepted
	_, err = codec.UnmarshalDocument([]byte(strings.Replace(string(b), `"entityType": "activation"`, `"entityType": "action"`, 1)))
	if ce := assertMalformed(t, err); ce.Field != "entityType" {
		t.Fatalf("got %v", err)
	}
	if _, err := codec.UnmarshalDocument([]byte(strings.Replace(string(b), `"entityType": "activation",`, ``, 1))); err != nil {
		t.Fatal(err)
	}
	// ActivationsApiTests: a stored doc without subject is corrupted
	_, err = codec.UnmarshalDocument([]byte(strings.Replace(string(b), `"subject": "anon-HfJWZZSG9YE38Y8DJbgp9Xn0YyN",`, ``, 1)))
	if ce := assertMalformed(t, err); ce.Field != "subject" {
		t.Fatalf("got %v", err)
	}
}

// DatastoreTests "CRD activation with utf8 characters".
func TestUTF8Logs(t *testing.T) {
	a := compatActivation(t)
	a.Logs = []string{"Proteína", "日本語", "😀"}
	got, err := codec.UnmarshalActivation(mustMarshal(t, a))
	if err != nil || !reflect.DeepEqual(got.Logs, a.Logs) {
		t.Fatalf("%q %v", got.Logs, err)
	}
}

// The codec reads what OpenWhisk reads; the store refuses names CouchDB
// reserves. Every shared activation vector passes both.
func TestCodecAndStoreValidation(t *testing.T) {
	for _, name := range []string{"activation-with-logs.json", "activation-trigger.json", "activation-whisk-error.json",
		"activation-sequence-child-error.json", "activations/wa_compat_success.json", "activations/wa_large_result_1MiB_string.json"} {
		a, err := codec.UnmarshalActivation(readVector(t, name))
		if err != nil {
			t.Fatal(err)
		}
		if err := store.ValidateActivation(a); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}
	a, err := codec.UnmarshalActivation(activationWith(t, "namespace", `"_design/x"`))
	if err != nil {
		t.Fatalf("OpenWhisk accepts a leading underscore: %v", err)
	}
	if err := store.ValidateActivation(a); !errors.Is(err, store.ErrInvalid) {
		t.Fatalf("store accepted namespace %q", a.Namespace)
	}
}
