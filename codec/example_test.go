package codec_test

import (
	"errors"
	"fmt"
	"time"

	"github.com/go-whisk/activationstore/codec"
	"github.com/go-whisk/activationstore/store"
)

func ExampleDecode() {
	records := []string{
		// a combined ack from an invoker's completed<N> topic (master shape)
		`{"transid":["sid_hello_1",1574166384300],"response":{"namespace":"guest","name":"hello","subject":"guest","activationId":"2fbc6d5e5b6a4c2fbc6d5e5b6a7c2f9e","start":1574166384325,"end":1574166384330,"response":{"statusCode":0,"result":{"payload":"Hello"}},"logs":[],"version":"0.0.1","publish":false,"annotations":[]},"isSystemError":false,"instance":{"instance":0,"userMemory":"1024 MB","instanceType":"invoker"}}`,
		// a PR-era completion: nothing to persist
		`{"transid":["sid_hello_1",1574166384300],"activationId":"2fbc6d5e5b6a4c2fbc6d5e5b6a7c2f9e","isSystemError":false,"invoker":{"instance":0,"userMemory":"1024 MB"}}`,
		// not a record at all
		`{"foo":"bar"}`,
	}
	for _, r := range records {
		m, err := codec.Decode([]byte(r))
		if errors.Is(err, codec.ErrMalformed) {
			fmt.Println("dead-letter:", err)
			continue
		}
		if a := m.Activation(); a != nil {
			fmt.Printf("%T: persist %s (status %d, result %s)\n", m, a.DocID(), a.Response.StatusCode, a.Response.Result)
		} else {
			fmt.Printf("%T: skip\n", m)
		}
	}
	// Output:
	// *codec.CombinedMessage: persist guest/2fbc6d5e5b6a4c2fbc6d5e5b6a7c2f9e (status 0, result {"payload":"Hello"})
	// *codec.CompletionMessage: skip
	// dead-letter: codec: want an acknowledgement (with member "transid") or an activation (with member "activationId"), found neither
}

func ExampleMarshalActivation() {
	d := int64(5)
	a := &store.Activation{
		Namespace:    "guest",
		Name:         "hello",
		Subject:      "guest",
		ActivationID: "2fbc6d5e5b6a4c2fbc6d5e5b6a7c2f9e",
		Start:        time.UnixMilli(1574166384325),
		End:          time.UnixMilli(1574166384330),
		Response:     store.Response{StatusCode: store.StatusSuccess, Result: []byte(`{"payload": "Hello"}`)},
		Logs:         []string{"2019-11-19T12:26:24.330Z stdout: hi"},
		Version:      "0.0.1",
		Annotations:  []store.Annotation{{Key: "path", Value: []byte(`"guest/hello"`)}},
		Duration:     &d,
	}
	b, err := codec.MarshalActivation(a)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(string(b))
	// Output:
	// {"namespace":"guest","name":"hello","subject":"guest","activationId":"2fbc6d5e5b6a4c2fbc6d5e5b6a7c2f9e","start":1574166384325,"end":1574166384330,"response":{"statusCode":0,"result":{"payload":"Hello"}},"logs":["2019-11-19T12:26:24.330Z stdout: hi"],"version":"0.0.1","publish":false,"annotations":[{"key":"path","value":"guest/hello"}],"duration":5}
}

func ExampleMarshalResultMessage() {
	a, _ := codec.UnmarshalActivation([]byte(`{"namespace":"guest","name":"t","subject":"guest","activationId":"0123456789abcdef0123456789abcdef","start":1574166386000,"end":0,"response":{"statusCode":0},"logs":[],"version":"0.0.1","publish":false,"annotations":[]}`))
	tid := codec.TransactionID{ID: "sid_controller", Start: time.UnixMilli(1574166386000)}
	b, _ := codec.MarshalResultMessage(tid, a)
	fmt.Println(string(b))
	// Output:
	// {"transid":["sid_controller",1574166386000],"response":{"namespace":"guest","name":"t","subject":"guest","activationId":"0123456789abcdef0123456789abcdef","start":1574166386000,"end":0,"response":{"statusCode":0},"logs":[],"version":"0.0.1","publish":false,"annotations":[]}}
}
