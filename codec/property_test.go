package codec_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/go-whisk/activationstore/codec"
	"github.com/go-whisk/activationstore/store"
)

// The property of issue 16: store.ValidateActivation, the writers and the
// reader agree. Whatever Validate accepts, every writer writes, and the
// reader reads back as store.Normalize(a) (raw JSON compared by value,
// timestamps to the millisecond). Whatever a writer refuses, Validate
// refuses. The same for acks and invoker instance ids, per era: whatever
// Marshal writes, Decode reads back as the message with its transid and
// instance as the era writes them.

// gen draws values near every boundary the codec and OpenWhisk care about.
type gen struct{ r *rand.Rand }

func (g gen) pick(s ...string) string { return s[g.r.IntN(len(s))] }

// mostly returns valid most of the time, else one of the others, so that
// most activations drawn are valid and still every field meets its edges.
func (g gen) mostly(valid string, others ...string) string {
	if g.r.IntN(12) != 0 {
		return valid
	}
	return g.pick(others...)
}

// repaired is s as written: each byte that is not UTF-8 becomes U+FFFD.
func repaired(s string) string { return string([]rune(s)) }

func (g gen) time() time.Time {
	switch g.r.IntN(8) {
	case 0:
		return time.Time{}
	case 1:
		return store.NoEnd
	case 2:
		return time.UnixMilli(math.MinInt64 + g.r.Int64N(3))
	case 3:
		return time.UnixMilli(math.MaxInt64 - g.r.Int64N(3))
	case 4:
		return time.Unix(g.r.Int64N(4e9)-2e9, g.r.Int64N(1e9)) // sub-millisecond precision is dropped
	default:
		return time.UnixMilli(1_700_000_000_000 + g.r.Int64N(1e6))
	}
}

func (g gen) int64p() *int64 {
	if g.r.IntN(4) == 0 {
		return nil
	}
	v := []int64{0, 1, math.MaxInt32, 1234, -1, math.MaxInt32 + 1, math.MinInt32, math.MaxInt64, math.MinInt64, 2147484011, g.r.Int64()}[g.r.IntN(11)]
	return &v
}

func (g gen) str() string {
	return g.pick("", "a", "\uffff", "x\uffffy", "é", "\U0001F600", "\x00", "\t \n", "\"\\/", "\u2028", "\ufffe", "a\xffb", "<&>")
}

func (g gen) number() string {
	if g.r.IntN(3) != 0 {
		return g.pick("0", "-0", "1", "-1.50", "1e3", "1E+3", "2.5e-3", "4294967299", "123456789012345678901234567890")
	}
	return g.pick("0", "-0", "1", "-1.50", "1e3", "1E+3", "2.5e-3", "1e2147483647", "1e2147483648", "1e-2147483648", "-1.0e-2147483647",
		strings.Repeat("9", 100), strings.Repeat("9", 101), "123456789012345678901234567890", "0.000001", "4294967299")
}

func (g gen) raw(depth int) string {
	switch n := g.r.IntN(9); {
	case n == 0 && depth < 3:
		parts := make([]string, g.r.IntN(3))
		for i := range parts {
			parts[i] = g.raw(depth + 1)
		}
		return "[" + strings.Join(parts, ", ") + "]"
	case n == 1 && depth < 3:
		parts := make([]string, g.r.IntN(3))
		for i := range parts {
			parts[i] = strconvQuote(g.str()) + " : " + g.raw(depth+1)
		}
		return "{" + strings.Join(parts, ",") + "}"
	case n == 2:
		return g.pick("null", "true", "false")
	case n == 3:
		return `"\ud800"` // a lone surrogate, escaped
	case n == 4 && g.r.IntN(8) == 0:
		return strings.Repeat("[", store.MaxRawNesting+g.r.IntN(2)) + strings.Repeat("]", store.MaxRawNesting+g.r.IntN(2))
	case n < 7:
		return g.number()
	}
	return strconvQuote(g.str())
}

func (g gen) rawp() json.RawMessage {
	if g.r.IntN(5) == 0 {
		return nil
	}
	r := g.raw(0)
	if g.r.IntN(10) == 0 {
		r = " " + r + "\n"
	}
	return json.RawMessage(r)
}

func (g gen) activation() *store.Activation {
	a := &store.Activation{
		Namespace:    g.mostly(g.pick("guest", "guest/pkg", "a b/_p", "whisk.system", "n@x.io"), "_x", "guest/", "a//b"),
		Name:         g.mostly(g.pick("hello", "_util", "a b", "a-b&c.d@e"), "a ", "x/y", "é"),
		Subject:      g.mostly(g.pick("guest", "  guest ", "\x00abcde", "guest\uffff", "ééééé", "\U0001F600\U0001F600\U0001F600", "\t\tsubject-x\x1f"), " abc ", "a\xffbcde"),
		ActivationID: g.mostly("5a0d7c1e2f3a4b5c8d9e0f1a2b3c4d5e", "5A0D7C1E2F3A4B5C8D9E0F1A2B3C4D5E", "abc"),
		Start:        g.time(),
		End:          g.time(),
		Cause:        g.mostly(g.pick("", "0123456789abcdef0123456789abcdef"), "x"),
		Response:     store.Response{StatusCode: []int{0, 1, 2, 3, 0, 1, 2, 3, 4, -1, math.MaxInt32 + 1}[g.r.IntN(11)], Result: g.rawp(), Size: g.int64p()},
		Version:      g.mostly(g.pick("0.0.1", "", "1.02", "3", "01.002.0003", "999999999.0.1"), "0.0.0", "1.2.3.4", "1.", "+1"),
		Publish:      g.r.IntN(2) == 0,
		Duration:     g.int64p(),
	}
	for range g.r.IntN(3) {
		a.Logs = append(a.Logs, g.str())
	}
	for range g.r.IntN(3) {
		a.Annotations = append(a.Annotations, store.Annotation{Key: g.mostly(g.pick("path", "k", "k\uffff"), "", "\xff"), Value: g.rawp(),
			Init: g.r.IntN(3) == 0, Encryption: g.mostly(g.pick("", "aes256", "\uffff"), "\xff")})
	}
	return a
}

// canonical is what a is once read back: store.Normalize plus the
// representation the reader gives (empty slices, null values, compacted
// raw JSON compared by value, times in UTC to the millisecond).
func canonical(t *testing.T, a *store.Activation) *store.Activation {
	c := store.Normalize(a)
	c.Start = time.UnixMilli(c.Start.UnixMilli()).UTC()
	c.End = time.UnixMilli(c.End.UnixMilli()).UTC()
	if c.Logs == nil {
		c.Logs = []string{}
	}
	if c.Annotations == nil {
		c.Annotations = []store.Annotation{}
	}
	for i := range c.Annotations {
		if c.Annotations[i].Value == nil {
			c.Annotations[i].Value = json.RawMessage("null")
		}
		c.Annotations[i].Value = rawValue(t, c.Annotations[i].Value)
	}
	if c.Response.Result != nil {
		if bytes.Equal(bytes.TrimSpace(c.Response.Result), []byte("null")) {
			c.Response.Result = nil // an Option: null is None
		} else {
			c.Response.Result = rawValue(t, c.Response.Result)
		}
	}
	return c
}

// rawValue re-encodes a raw value through encoding/json, so that two raw
// values compare by value.
func rawValue(t *testing.T, raw json.RawMessage) json.RawMessage {
	var v any
	if err := jsonUnmarshalNumber(raw, &v); err != nil {
		t.Fatalf("raw value %q: %v", raw, err)
	}
	return jsonMarshal(t, v)
}

func assertSameActivation(t *testing.T, what string, in, want, got *store.Activation) {
	t.Helper()
	g := canonical(t, got)
	if !reflect.DeepEqual(want, g) {
		t.Fatalf("%s: read back differs\n  in: %#v\nwant: %#v\n got: %#v", what, in, want, g)
	}
}

func TestPropertyValidateWriteReadAgree(t *testing.T) {
	n := 20000
	if testing.Short() {
		n = 2000
	}
	g := gen{rand.New(rand.NewPCG(16, 1))}
	accepted, refused := 0, 0
	for i := 0; i < n; i++ {
		a := g.activation()
		verr := store.ValidateActivation(a)
		ser, werr := codec.MarshalActivation(a)
		if verr != nil {
			refused++
			if werr != nil && !errors.Is(werr, store.ErrInvalid) {
				t.Fatalf("writer error %v does not match store.ErrInvalid", werr)
			}
			continue
		}
		accepted++
		if werr != nil {
			t.Fatalf("Validate accepted %#v, MarshalActivation refused: %v", a, werr)
		}
		want := canonical(t, a)
		back, err := codec.UnmarshalActivation(ser)
		if err != nil {
			t.Fatalf("Validate accepted %#v, the reader refused what the writer wrote: %v\n%s", a, err, ser)
		}
		assertSameActivation(t, "serdes", a, want, back)
		if bytes.Contains(ser, []byte("\uffff")) {
			t.Fatalf("raw U+FFFF written: %q", ser)
		}

		doc, err := codec.MarshalDocument(a, a.Start)
		if err != nil {
			t.Fatal(err)
		}
		d, err := codec.UnmarshalDocument(doc)
		if err != nil {
			t.Fatalf("document: %v\n%s", err, doc)
		}
		assertSameActivation(t, "document", a, want, d.Activation)

		ext, err := codec.MarshalExtended(a)
		if err != nil {
			t.Fatal(err)
		}
		e, err := codec.UnmarshalExtended(ext)
		if err != nil {
			t.Fatalf("extended: %v\n%s", err, ext)
		}
		wantExt := *want
		if want.HasEnd() {
			d := want.DurationMillis()
			wantExt.Duration = &d // toExtendedJson: duration getOrElse end-start
		}
		assertSameActivation(t, "extended", a, &wantExt, e)

		tid := codec.TransactionID{ID: g.str(), Start: g.time()}
		for _, era := range []codec.Era{codec.EraMaster, codec.EraPR} {
			m := codec.NewCombinedMessage(tid, a, codec.InstanceID{Instance: g.r.IntN(1 << 20), UserMemory: "1024 MB"})
			m.Era = era
			b, err := codec.Marshal(m)
			if err != nil {
				t.Fatal(err)
			}
			got, err := codec.Decode(b)
			if err != nil {
				t.Fatalf("%v ack: %v\n%s", era, err, b)
			}
			assertSameActivation(t, "combined "+era.String(), a, want, got.Activation())
		}
	}
	if accepted < n/20 || refused < n/20 {
		t.Fatalf("the generator is lopsided: %d accepted, %d refused", accepted, refused)
	}
	t.Logf("%d accepted, %d refused", accepted, refused)
}

// Acks and instance ids: whatever Marshal writes, Decode reads back as
// the message the era's controllers read; whatever it refuses, it refuses
// with store.ErrInvalid naming the member.
func TestPropertyAcksAndInstanceIDsRoundTrip(t *testing.T) {
	n := 5000
	if testing.Short() {
		n = 500
	}
	g := gen{rand.New(rand.NewPCG(16, 2))}
	a, err := codec.UnmarshalActivation(activationJSON())
	if err != nil {
		t.Fatal(err)
	}
	written := 0
	for i := 0; i < n; i++ {
		tid := codec.TransactionID{ID: g.str(), Start: g.time(), ExtraLogging: g.r.IntN(2) == 0}
		if g.r.IntN(2) == 0 {
			tid.Parent = &codec.TransactionID{ID: g.str(), Start: g.time(), ExtraLogging: g.r.IntN(2) == 0}
		}
		in := codec.InstanceID{
			Instance:   []int{0, 1, math.MaxInt32, math.MaxInt32 + 1, math.MinInt32, math.MinInt32 - 1, -1, 1 << 40}[g.r.IntN(8)],
			UserMemory: g.pick("1024 MB", "1 B", "512m", "x"), BusyMemory: g.pick("", "256 MB"),
			UniqueName: g.str(), DisplayedName: g.str(),
		}
		if g.r.IntN(2) == 0 {
			in.Tags, in.DedicatedNamespaces = []string{g.str()}, []string{g.str()}
		}
		era := []codec.Era{codec.EraMaster, codec.EraPR}[g.r.IntN(2)]
		var m codec.Message
		switch g.r.IntN(3) {
		case 0:
			m = &codec.ResultMessage{TransID: tid, Response: a, Era: era}
		case 1:
			c := codec.NewCombinedMessage(tid, a, in)
			c.Era = era
			m = c
		default:
			c := codec.NewCompletionMessage(tid, a, in)
			c.Era = era
			m = c
		}
		b, err := codec.Marshal(m)
		if err != nil {
			if !errors.Is(err, store.ErrInvalid) {
				t.Fatalf("%v does not match store.ErrInvalid", err)
			}
			var ie *store.InvalidError
			if !errors.As(err, &ie) || ie.Field == "" {
				t.Fatalf("%v names no member", err)
			}
			outOfInt := in.Instance > math.MaxInt32 || in.Instance < math.MinInt32
			if _, isResult := m.(*codec.ResultMessage); isResult || !outOfInt && in.UserMemory != "x" {
				t.Fatalf("refused %#v: %v", m, err)
			}
			continue
		}
		written++
		if bytes.Contains(b, []byte("\uffff")) {
			t.Fatalf("raw U+FFFF written: %q", b)
		}
		got, err := codec.Decode(b)
		if err != nil {
			t.Fatalf("wrote %s, read %v", b, err)
		}
		wantTID := tid
		wantTID.ID = repaired(tid.ID)
		wantTID.Start = time.UnixMilli(tid.Start.UnixMilli()).UTC()
		if tid.Parent != nil {
			p := *tid.Parent
			p.ID = repaired(p.ID)
			p.Start = time.UnixMilli(p.Start.UnixMilli()).UTC()
			wantTID.Parent = &p
		}
		if era == codec.EraPR {
			wantTID.Parent = nil
		}
		var gotTID codec.TransactionID
		var gotIn *codec.InstanceID
		switch m := got.(type) {
		case *codec.ResultMessage:
			gotTID = m.TransID
		case *codec.CombinedMessage:
			gotTID, gotIn = m.TransID, &m.Instance
			if m.Era != era {
				t.Fatalf("era %v read as %v", era, m.Era)
			}
		case *codec.CompletionMessage:
			gotTID, gotIn = m.TransID, &m.Instance
			if m.Era != era {
				t.Fatalf("era %v read as %v", era, m.Era)
			}
		}
		if fmt.Sprintf("%T", got) != fmt.Sprintf("%T", m) {
			t.Fatalf("wrote %T, read %T", m, got)
		}
		if !reflect.DeepEqual(wantTID, gotTID) {
			t.Fatalf("transid\nwant %#v\n got %#v\n%s", wantTID, gotTID, b)
		}
		if gotIn != nil {
			want := in
			want.Raw = gotIn.Raw
			want.UniqueName, want.DisplayedName = repaired(in.UniqueName), repaired(in.DisplayedName)
			for i := range want.Tags {
				want.Tags[i] = repaired(want.Tags[i])
				want.DedicatedNamespaces[i] = repaired(want.DedicatedNamespaces[i])
			}
			if era == codec.EraPR {
				want.BusyMemory, want.Tags, want.DedicatedNamespaces = "", nil, nil // v1 ids have none
			} else {
				want.Type = "invoker"
				if want.Tags == nil {
					want.Tags, want.DedicatedNamespaces = []string{}, []string{}
				}
			}
			if !reflect.DeepEqual(want, *gotIn) {
				t.Fatalf("instance\nwant %#v\n got %#v\n%s", want, *gotIn, b)
			}
			// and written again from what was read, the same JSON
			again, err := codec.Marshal(got)
			if err != nil {
				t.Fatal(err)
			}
			assertJSONEqual(t, b, again)
		}
	}
	if written < n/4 {
		t.Fatalf("only %d of %d written", written, n)
	}
}
