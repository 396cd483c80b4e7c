package codec_test

import (
	"encoding/json"
	"fmt"
	"reflect"
	"sync"
	"testing"

	"github.com/go-whisk/activationstore/codec"
	"github.com/go-whisk/activationstore/store"
)

// Decode recycles its internal records: what it returned must not change
// when later decodes, on any goroutine, reuse them.
func TestDecodedValuesOutliveTheirRecords(t *testing.T) {
	record := func(i int) []byte {
		a := compatActivation(t)
		a.ActivationID = fmt.Sprintf("%032x", i)
		a.Logs = []string{fmt.Sprintf("log %d", i), "second line"}
		a.Annotations = []store.Annotation{{Key: fmt.Sprintf("k%d", i), Value: json.RawMessage(fmt.Sprintf(`{"i":%d}`, i))}}
		a.Response.Result = json.RawMessage(fmt.Sprintf(`{"n":%d}`, i))
		b, err := codec.MarshalResultMessage(testingTID, a)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	decode := func(b []byte) *store.Activation {
		m, err := codec.Decode(b)
		if err != nil {
			t.Error(err)
			return nil
		}
		return m.Activation()
	}
	first := decode(record(0))
	want, err := codec.MarshalActivation(first)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := 1; i < 200; i++ {
				a := decode(record(g*1000 + i))
				if a != nil && a.Logs[0] != fmt.Sprintf("log %d", g*1000+i) {
					t.Errorf("decode %d: logs %q", g*1000+i, a.Logs)
				}
				// failed decodes recycle their records too
				_, _ = codec.Decode([]byte(`{"transid":["x",1],"response":{"namespace":1}}`))
			}
		})
	}
	wg.Wait()
	got, err := codec.MarshalActivation(first)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != string(want) {
		t.Errorf("the first activation changed after later decodes:\n got %s\nwant %s", got, want)
	}
}

// A repeated "response" member overrides the earlier one, as in
// spray-json, whichever its shape.
func TestRepeatedResponseMember(t *testing.T) {
	a := compatActivation(t)
	inner, err := codec.MarshalActivation(a)
	if err != nil {
		t.Fatal(err)
	}
	id := `"2fbc6d5e5b6a4c2fbc6d5e5b6a7c2f9e"`
	cases := []struct {
		body   string
		wantID bool
	}{
		{`{"transid":["x",1],"response":` + string(inner) + `,"response":` + id + `}`, true},
		{`{"transid":["x",1],"response":` + id + `,"response":` + string(inner) + `}`, false},
		{`{"transid":["x",1],"response":{"namespace":1},"response":` + string(inner) + `}`, false},
	}
	for i, c := range cases {
		m, err := codec.Decode([]byte(c.body))
		if err != nil {
			t.Fatalf("case %d: %v", i, err)
		}
		rm := m.(*codec.ResultMessage)
		if c.wantID {
			if rm.Response != nil || rm.ActivationID == "" {
				t.Errorf("case %d: got %+v, want the activation id", i, rm)
			}
			continue
		}
		if !reflect.DeepEqual(store.Normalize(rm.Response), store.Normalize(a)) {
			t.Errorf("case %d: got %+v, want the last response", i, rm.Response)
		}
	}
}
