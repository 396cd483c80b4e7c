// Package activationtest builds valid activations for tests.
package activationtest

import (
	"encoding/json"
	"fmt"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/go-whisk/activationstore/store"
)

// epoch is the start of activation number 0: 2023-11-14T22:13:20Z.
var epoch = time.UnixMilli(1_700_000_000_000)

var seq atomic.Int64

// New returns a valid completed activation of the action namespace/hello,
// with every optional field set: a log line, a path and a kind annotation,
// a duration. Each call numbers its activation n = 1, 2, …: it starts n ms
// after 2023-11-14T22:13:20Z, lasts 7 ms and its result is {"n":n}. Its
// id holds n and the clock, so that it is fresh across the processes
// sharing a broker or a database.
func New(namespace string) *store.Activation {
	n := seq.Add(1)
	path, _ := json.Marshal(namespace + "/hello") // a string always marshals
	start := epoch.Add(time.Duration(n) * time.Millisecond)
	d := int64(7)
	return &store.Activation{
		Namespace:    namespace,
		Name:         "hello",
		Subject:      "guest-subject",
		ActivationID: fmt.Sprintf("%032x", uint64(n)|uint64(time.Now().UnixNano())<<20),
		Start:        start,
		End:          start.Add(time.Duration(d) * time.Millisecond),
		Response:     store.Response{StatusCode: store.StatusSuccess, Result: json.RawMessage(`{"n":` + strconv.FormatInt(n, 10) + `}`)},
		Logs:         []string{start.UTC().Format("2006-01-02T15:04:05.000Z") + " stdout: hello"},
		Version:      store.DefaultVersion,
		Annotations: []store.Annotation{
			{Key: "path", Value: path},
			{Key: "kind", Value: json.RawMessage(`"nodejs:20"`)},
		},
		Duration: &d,
	}
}
