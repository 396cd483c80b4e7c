package codec_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/go-whisk/activationstore/codec"
	"github.com/go-whisk/activationstore/store"
)

// Tests of the five disagreements found by running OpenWhisk's own
// serializers over what this package writes and reads (issue 16), and of
// the U+FFFF and PR-era transid rules. Each fails on the codec as it was.

// base is an activation in the serdes form, with placeholders.
const base = `{"namespace":"guest","name":"hello","subject":SUBJECT,"activationId":"5a0d7c1e2f3a4b5c8d9e0f1a2b3c4d5e",` +
	`"start":START,"end":END,"response":{"statusCode":CODE,"result":RESULT,"size":SIZE},"logs":["l"],"version":"0.0.1",` +
	`"publish":false,"annotations":[{"key":"k","value":VALUE}],"duration":5}`

func activationJSON(repl ...string) []byte {
	r := map[string]string{"SUBJECT": `"guest"`, "START": "1000", "END": "1005", "CODE": "0", "RESULT": `{"ok":true}`, "SIZE": "11", "VALUE": "1"}
	for i := 0; i+1 < len(repl); i += 2 {
		r[repl[i]] = repl[i+1]
	}
	s := base
	for k, v := range r {
		s = strings.Replace(s, k, v, 1)
	}
	return []byte(s)
}

func requireInvalid(t *testing.T, err error, field string) {
	t.Helper()
	if !errors.Is(err, store.ErrInvalid) {
		t.Fatalf("got %v, want an error matching store.ErrInvalid", err)
	}
	var ie *store.InvalidError
	if !errors.As(err, &ie) || ie.Field != field {
		t.Fatalf("got %#v, want an *InvalidError naming %q", err, field)
	}
}

// Cause 1: Subject is an ArgNormalizer; String.trim strips every char up to
// U+0020 before the length check, and OpenWhisk keeps the trimmed string.
func TestInteropSubjectTrimmed(t *testing.T) {
	for in, want := range map[string]string{`"  guest "`: "guest", `"\u0000abcde"`: "abcde", `"\t\n guest-subject\u001f"`: "guest-subject"} {
		a, err := codec.UnmarshalActivation(activationJSON("SUBJECT", in))
		if err != nil {
			t.Fatalf("%s: %v", in, err)
		}
		if a.Subject != want {
			t.Fatalf("%s read as %q, want %q", in, a.Subject, want)
		}
	}
	for _, bad := range []string{`" abc "`, `"\u0000abc\u0000"`, `"    "`} {
		_, err := codec.UnmarshalActivation(activationJSON("SUBJECT", bad))
		if ce := assertMalformed(t, err); ce.Field != "subject" {
			t.Fatalf("%s: field %q", bad, ce.Field)
		}
	}
	a, _ := codec.UnmarshalActivation(activationJSON())
	a.Subject = "  guest \x00"
	if err := store.ValidateActivation(a); err != nil {
		t.Fatal(err)
	}
	b := mustMarshal(t, a)
	if !bytes.Contains(b, []byte(`"subject":"guest"`)) {
		t.Fatalf("subject not written trimmed: %s", b)
	}
	a.Subject = " abc "
	if err := store.ValidateActivation(a); !errors.Is(err, store.ErrInvalid) {
		t.Fatalf("Validate accepted a subject OpenWhisk refuses: %v", err)
	}
}

// Causes 2 and 3: Scala Ints (response.size, statusCode, an invoker's
// instance) wrap as BigDecimal.intValue does; Longs (duration, timestamps)
// as longValue does. The reader reads what OpenWhisk reads; the writer and
// store.ValidateActivation refuse what OpenWhisk would read as another number.
func TestInteropIntsWrapAsScala(t *testing.T) {
	a, err := codec.UnmarshalActivation(activationJSON("SIZE", "2147484011", "CODE", "4294967297", "START", "9223372036854775808"))
	if err != nil {
		t.Fatal(err)
	}
	if *a.Response.Size != -2147483285 || a.Response.StatusCode != 1 || a.Start.UnixMilli() != -9223372036854775808 {
		t.Fatalf("size %d statusCode %d start %d: want -2147483285, 1, -9223372036854775808", *a.Response.Size, a.Response.StatusCode, a.Start.UnixMilli())
	}
	a, err = codec.UnmarshalActivation(activationJSON("SIZE", "2.9e0", "START", "-1.5"))
	if err != nil || *a.Response.Size != 2 || a.Start.UnixMilli() != -1 {
		t.Fatalf("fractions truncate toward zero: %v %v", a, err)
	}

	a, _ = codec.UnmarshalActivation(activationJSON())
	big := int64(2147484011)
	a.Response.Size = &big
	_, err = codec.MarshalActivation(a)
	requireInvalid(t, err, "response.size")
	_, err = codec.MarshalResultMessage(codec.TransactionID{ID: "t"}, a)
	requireInvalid(t, err, "response.response.size")
	if err := store.ValidateActivation(a); !errors.Is(err, store.ErrInvalid) {
		t.Fatalf("Validate accepted size 2147484011: %v", err)
	}
	max := int64(store.MaxScalaInt)
	a.Response.Size = &max
	if _, err := codec.MarshalActivation(a); err != nil {
		t.Fatal(err)
	}

	for _, era := range []codec.Era{codec.EraMaster, codec.EraPR} {
		key := era.InstanceKey()
		in := `{"transid":["t",1],"activationId":"5a0d7c1e2f3a4b5c8d9e0f1a2b3c4d5e","isSystemError":false,"` + key +
			`":{"instance":4294967299,"userMemory":"1024 MB","instanceType":"invoker","tags":[],"dedicatedNamespaces":[]}}`
		m, err := codec.Decode([]byte(in))
		if err != nil {
			t.Fatal(err)
		}
		c := m.(*codec.CompletionMessage)
		if c.Instance.Instance != 3 {
			t.Fatalf("instance 4294967299 read as %d, want 3 (as OpenWhisk's Int)", c.Instance.Instance)
		}
		out, err := codec.Marshal(c)
		if err != nil || !bytes.Contains(out, []byte(`{"instance":3,`)) {
			t.Fatalf("written %s (%v), want instance 3", out, err)
		}
		c.Instance = codec.InstanceID{Instance: 1 << 31, UserMemory: "1024 MB"}
		_, err = codec.Marshal(c)
		requireInvalid(t, err, key+".instance")
	}
}

// Cause 4: numbers spray-json cannot parse fail the whole record in
// OpenWhisk. The reader keeps them; the writers refuse them.
func TestInteropUnparseableNumbersRefusedOnWrite(t *testing.T) {
	for _, lit := range []string{"1e2147483648", "-2.5E-2147483648", strings.Repeat("1", 101), "[" + strings.Repeat("1", 101) + "]"} {
		a, err := codec.UnmarshalActivation(activationJSON("RESULT", `{"x":`+lit+`}`))
		if err != nil {
			t.Fatalf("%s: the reader refused %v", lit, err)
		}
		_, err = codec.MarshalActivation(a)
		requireInvalid(t, err, "response.result")
		_, err = codec.MarshalDocument(a, time.UnixMilli(1))
		requireInvalid(t, err, "response.result")
		_, err = codec.Marshal(codec.NewCombinedMessage(codec.TransactionID{ID: "t"}, a, invokerID(0, "1 MB")))
		requireInvalid(t, err, "response.response.result")
		if err := store.ValidateActivation(a); !errors.Is(err, store.ErrInvalid) {
			t.Fatalf("%s: Validate accepted it: %v", lit, err)
		}

		a, err = codec.UnmarshalActivation(activationJSON("VALUE", lit))
		if err != nil {
			t.Fatal(err)
		}
		_, err = codec.MarshalActivation(a)
		requireInvalid(t, err, "annotations[0].value")
	}
	// in an instance id kept as read
	in := `{"transid":["t",1],"activationId":"5a0d7c1e2f3a4b5c8d9e0f1a2b3c4d5e","instance":{"instance":0,"userMemory":"1 MB","instanceType":"invoker","tags":[],"dedicatedNamespaces":[],"x":1e2147483648}}`
	m, err := codec.Decode([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	_, err = codec.Marshal(m)
	requireInvalid(t, err, "instance")
	// a raw value nested deeper than spray-json reads in an ack
	deep := strings.Repeat("[", store.MaxRawNesting+1) + strings.Repeat("]", store.MaxRawNesting+1)
	a, err := codec.UnmarshalActivation(activationJSON("RESULT", deep))
	if err != nil {
		t.Fatal(err)
	}
	_, err = codec.MarshalActivation(a)
	requireInvalid(t, err, "response.result")
}

// Cause 5: the zero time.Time is year 1, written as -62135596800000 and
// read back as itself; only epoch 0 is "no end".
func TestInteropZeroTimeRoundTrips(t *testing.T) {
	const year1 = "-62135596800000"
	a, err := codec.UnmarshalActivation(activationJSON("START", year1, "END", year1))
	if err != nil {
		t.Fatal(err)
	}
	if !a.Start.IsZero() || !a.End.IsZero() || !a.HasEnd() {
		t.Fatalf("start %v end %v: want the zero time.Time, ended", a.Start, a.End)
	}
	b := mustMarshal(t, a)
	if !bytes.Contains(b, []byte(`"start":`+year1+`,"end":`+year1+`,`)) {
		t.Fatalf("not written as read: %s", b)
	}
	ext, err := codec.MarshalExtended(a)
	if err != nil || !bytes.Contains(ext, []byte(`"end":`+year1)) || !bytes.Contains(ext, []byte(`"duration":5`)) {
		t.Fatalf("extended form lost end or duration: %s %v", ext, err)
	}
	sum, err := codec.MarshalSummary(a.Summary())
	if err != nil || !bytes.Contains(sum, []byte(`"end":`+year1)) || !bytes.Contains(sum, []byte(`"statusCode":0`)) {
		t.Fatalf("summary lost end or statusCode: %s %v", sum, err)
	}
	back, err := codec.UnmarshalExtended(ext)
	if err != nil || !back.End.IsZero() || !back.HasEnd() {
		t.Fatalf("extended read back: %v %v", back, err)
	}
	trigger, err := codec.UnmarshalActivation(activationJSON("END", "0"))
	if err != nil || trigger.HasEnd() || !trigger.End.Equal(store.NoEnd) {
		t.Fatalf("end 0: %v %v", trigger, err)
	}
}

// spray-json's parser takes a raw U+FFFF as the end of input: every JSON
// this package writes escapes it.
func TestInteropUFFFFEscaped(t *testing.T) {
	const ffff = "\uffff"
	a, _ := codec.UnmarshalActivation(activationJSON("RESULT", `{"s":"a`+ffff+`b","`+ffff+`":1}`, "VALUE", `"`+ffff+`"`))
	a.Subject = "guest" + ffff
	a.Logs = []string{ffff, "x" + ffff + "y"}
	a.Annotations = append(a.Annotations, store.Annotation{Key: "k" + ffff, Value: json.RawMessage(`1`), Encryption: "e" + ffff})
	if err := store.ValidateActivation(a); err != nil {
		t.Fatal(err)
	}
	tid := codec.TransactionID{ID: "t" + ffff, Start: time.UnixMilli(1), Parent: &codec.TransactionID{ID: ffff}}
	in := codec.InstanceID{Instance: 1, UserMemory: "1 MB", UniqueName: ffff, DisplayedName: ffff, Tags: []string{ffff}, DedicatedNamespaces: []string{ffff}}
	var outs [][]byte
	for _, f := range []func() ([]byte, error){
		func() ([]byte, error) { return codec.MarshalActivation(a) },
		func() ([]byte, error) { return codec.MarshalExtended(a) },
		func() ([]byte, error) { return codec.MarshalSummary(a) },
		func() ([]byte, error) { return codec.MarshalDocument(a, time.UnixMilli(1)) },
		func() ([]byte, error) { return codec.MarshalResultMessage(tid, a) },
		func() ([]byte, error) { return codec.Marshal(codec.NewCombinedMessage(tid, a, in)) },
		func() ([]byte, error) {
			m := codec.NewCombinedMessage(tid, a, in)
			m.Era = codec.EraPR
			return codec.Marshal(m)
		},
		func() ([]byte, error) { return codec.Marshal(codec.NewCompletionMessage(tid, a, in)) },
		func() ([]byte, error) { return in.MarshalJSON() },
		func() ([]byte, error) { return tid.MarshalJSON() },
	} {
		b, err := f()
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(b, []byte(ffff)) {
			t.Fatalf("raw U+FFFF written: %q", b)
		}
		if !bytes.Contains(b, []byte(`\uffff`)) {
			t.Fatalf("U+FFFF lost: %q", b)
		}
		outs = append(outs, b)
	}
	back, err := codec.UnmarshalActivation(outs[0])
	if err != nil {
		t.Fatal(err)
	}
	if back.Subject != a.Subject || back.Logs[1] != a.Logs[1] || back.Annotations[1].Key != a.Annotations[1].Key || back.Annotations[1].Encryption != "e"+ffff {
		t.Fatalf("read back differs: %+v", back)
	}
	m, err := codec.Decode(outs[5])
	if err != nil || m.(*codec.CombinedMessage).TransID.ID != tid.ID || m.(*codec.CombinedMessage).Instance.UniqueName != ffff {
		t.Fatalf("ack read back: %+v %v", m, err)
	}
}

// PR-era controllers read a transid only as [id, start(, true)?]: a parent
// makes it "sid_unknown". At EraPR the parent is left out.
func TestInteropPRTransidWithoutParent(t *testing.T) {
	a, _ := codec.UnmarshalActivation(activationJSON())
	tid := codec.TransactionID{ID: "child", Start: time.UnixMilli(5), ExtraLogging: true, Parent: &codec.TransactionID{ID: "parent", Start: time.UnixMilli(1)}}
	in := invokerID(0, "1024 MB")
	result := &codec.ResultMessage{TransID: tid, Response: a}
	combined := codec.NewCombinedMessage(tid, a, in)
	completion := codec.NewCompletionMessage(tid, a, in)
	for _, m := range []codec.Message{result, combined, completion} {
		b, err := codec.Marshal(m)
		if err != nil || !bytes.HasPrefix(b, []byte(`{"transid":["child",5,true,["parent",1]]`)) {
			t.Fatalf("master: %s %v", b, err)
		}
	}
	result.Era, combined.Era, completion.Era = codec.EraPR, codec.EraPR, codec.EraPR
	for _, m := range []codec.Message{result, combined, completion} {
		b, err := codec.Marshal(m)
		if err != nil || !bytes.HasPrefix(b, []byte(`{"transid":["child",5,true],`)) {
			t.Fatalf("pr: %s %v", b, err)
		}
	}
}
