package codec_test

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/go-whisk/activationstore/codec"
	"github.com/go-whisk/activationstore/store"
)

// instanceRefused reports whether m's instance id is one a writer
// refuses: kept as read with a number OpenWhisk cannot parse.
func instanceRefused(m codec.Message) bool {
	var in *codec.InstanceID
	switch m := m.(type) {
	case *codec.CombinedMessage:
		in = &m.Instance
	case *codec.CompletionMessage:
		in = &m.Instance
	default:
		return false
	}
	_, err := in.MarshalJSON()
	return errors.Is(err, store.ErrInvalid)
}

// seedVectors adds every vector file (shared and extra) to the corpus.
func seedVectors(f *testing.F) {
	n := 0
	for _, dir := range []string{vectors, "testdata/extra", "testdata/interop"} {
		err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
			if err != nil || d.IsDir() || !strings.HasSuffix(p, ".json") {
				return err
			}
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			f.Add(b)
			n++
			return nil
		})
		if err != nil {
			f.Fatal(err)
		}
	}
	if n < 60 {
		f.Fatalf("seeded only %d vectors", n)
	}
}

func checkFailure(t *testing.T, err error) {
	t.Helper()
	var ce *codec.Error
	if !errors.Is(err, codec.ErrMalformed) || !errors.As(err, &ce) || ce.Reason == "" {
		t.Fatalf("untyped or empty error %T: %v", err, err)
	}
}

// FuzzDecode: Decode never panics; it fails with a *codec.Error, or the
// message re-encodes and decodes back to an equal message.
func FuzzDecode(f *testing.F) {
	seedVectors(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := codec.Decode(b)
		if err != nil {
			if m != nil {
				t.Fatalf("message %T returned with error", m)
			}
			checkFailure(t, err)
			return
		}
		out, err := codec.Marshal(m)
		if errors.Is(err, store.ErrInvalid) {
			// read, but refused on write: what OpenWhisk could not read
			// (store.NumberProblem, store.MaxRawNesting)
			if a := m.Activation(); a != nil && store.ValidateActivation(a) == nil && !instanceRefused(m) {
				t.Fatalf("the writer refused what Validate accepts: %v", err)
			}
			return
		}
		if err != nil {
			t.Fatalf("re-encoding %T failed: %v", m, err)
		}
		again, err := codec.Decode(out)
		if err != nil {
			t.Fatalf("decoding the re-encoding failed: %v\n%s", err, out)
		}
		if !reflect.DeepEqual(m, again) {
			t.Fatalf("decode(encode(m)) != m\n m: %#v\n again: %#v\n%s", m, again, out)
		}
	})
}

// FuzzUnmarshalActivation: the same property for the activation reader,
// which must also agree with Decode on plain activations.
func FuzzUnmarshalActivation(f *testing.F) {
	seedVectors(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		a, err := codec.UnmarshalActivation(b)
		if err != nil {
			if a != nil {
				t.Fatal("activation returned with error")
			}
			checkFailure(t, err)
			return
		}
		out, err := codec.MarshalActivation(a)
		if errors.Is(err, store.ErrInvalid) {
			if store.ValidateActivation(a) == nil {
				t.Fatalf("the writer refused what Validate accepts: %v", err)
			}
			return
		}
		if err != nil {
			t.Fatalf("re-encoding failed: %v", err)
		}
		again, err := codec.UnmarshalActivation(out)
		if err != nil {
			t.Fatalf("decoding the re-encoding failed: %v\n%s", err, out)
		}
		if !reflect.DeepEqual(a, again) {
			t.Fatalf("unmarshal(marshal(a)) != a\n%#v\n%#v", a, again)
		}
		for _, marshal := range []func() ([]byte, error){
			func() ([]byte, error) { return codec.MarshalSummary(a) },
			func() ([]byte, error) { return codec.MarshalDocument(a, a.Start) },
		} {
			if _, err := marshal(); err != nil {
				t.Fatalf("other forms: %v", err)
			}
		}
	})
}

// FuzzUnmarshalDocument covers the document and summary readers.
func FuzzUnmarshalDocument(f *testing.F) {
	seedVectors(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		doc, err := codec.UnmarshalDocument(b)
		if err != nil {
			checkFailure(t, err)
		} else if out, err := doc.MarshalJSON(); errors.Is(err, store.ErrInvalid) {
			if store.ValidateActivation(doc.Activation) == nil {
				t.Fatalf("the writer refused what Validate accepts: %v", err)
			}
		} else if err != nil {
			t.Fatal(err)
		} else if again, err := codec.UnmarshalDocument(out); err != nil || !reflect.DeepEqual(doc.Activation, again.Activation) {
			t.Fatalf("document round trip: %v", err)
		}
		s, err := codec.UnmarshalSummary(b)
		if err != nil {
			checkFailure(t, err)
			return
		}
		out, err := codec.MarshalSummary(s)
		if errors.Is(err, store.ErrInvalid) {
			return // a raw annotation value OpenWhisk could not read
		}
		if err != nil {
			t.Fatal(err)
		}
		if _, err := codec.UnmarshalSummary(out); err != nil {
			t.Fatalf("summary round trip: %v\n%s", err, out)
		}
	})
}

// FuzzElasticsearchDocument: the Elasticsearch document reader never
// panics and fails with a *codec.Error; what it reads is written back, and
// read again equal.
func FuzzElasticsearchDocument(f *testing.F) {
	seedVectors(f)
	f.Add([]byte(`{"namespace":"guest","name":"a","subject":"guest-subject","activationId":"abababababababababababababababab","start":1,"end":2,` +
		`"response":{"statusCode":0,"result":"{\"a\":\"\\uffff\"}"},"logs":["\uffff"],"version":"0.0.1","publish":false,` +
		`"annotations":{"k":1,"binding":"guest/b"},"annotationsArray":"[{\"key\":\"k\",\"value\":1,\"init\":true}]","path":"guest/b/a","@timestamp":"x"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		a, err := codec.UnmarshalElasticsearchDocument(b)
		if err != nil {
			if a != nil {
				t.Fatal("activation returned with error")
			}
			checkFailure(t, err)
			return
		}
		out, err := codec.MarshalElasticsearchDocument(a, a.Start)
		if errors.Is(err, store.ErrInvalid) {
			if store.ValidateActivation(a) == nil {
				t.Fatalf("the writer refused what Validate accepts: %v", err)
			}
			return
		}
		if err != nil {
			t.Fatalf("re-encoding failed: %v", err)
		}
		again, err := codec.UnmarshalElasticsearchDocument(out)
		if err != nil {
			t.Fatalf("decoding the re-encoding failed: %v\n%s", err, out)
		}
		if !reflect.DeepEqual(a, again) {
			t.Fatalf("unmarshal(marshal(a)) != a\n%#v\n%#v\n%s", a, again, out)
		}
	})
}
