package couchdb

import (
	"bytes"
	"encoding/json"
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var replySeeds = []string{
	`[]`,
	` [ ] `,
	`[{"ok":true,"id":"guest/0123456789abcdef0123456789abcdef","rev":"1-967a00dff5e02add41819138abb3284d"}]`,
	`[{"ok":true,"id":"a/b","rev":"1-x","accepted":true},{"id":"a/c","error":"conflict","reason":"Document update conflict."}]`,
	`[{"id":"a/d","error":"forbidden","reason":"refused: \"why\""}]`,
	"[\n {\"id\" : \"ü/ß\", \"rev\":\"2-y\", \"ok\" : true}\n]\n",
	`[{"id":"a/e","error":"internal_server_error","reason":"x","ref":12345}]`,
	`[{"ID":"a/f","rev":"1-z"}]`,
	`[{"id":"a/g","ok":false}]`,
	`[{"id":null}]`,
	`[{"id":"a"}`,
	`[{"id":"a"}]]`,
	`{"error":"bad_request"}`,
	``,
	"[{\"id\":\"\xbc\"}]",
}

// The scanner reads what encoding/json reads, or leaves the reply to it.
func TestScanBulkReplyAgreesWithEncodingJSON(t *testing.T) {
	for _, seed := range replySeeds {
		checkReply(t, []byte(seed))
	}
	got, ok := scanBulkReply([]byte(replySeeds[3]))
	require.True(t, ok, "the usual shape is scanned")
	assert.Equal(t, []bulkResult{
		{ID: "a/b", Rev: "1-x", Accepted: true},
		{ID: "a/c", Error: "conflict", Reason: "Document update conflict."},
	}, got)
}

func FuzzScanBulkReply(f *testing.F) {
	for _, seed := range replySeeds {
		f.Add([]byte(seed))
	}
	f.Fuzz(checkReply)
}

func checkReply(t *testing.T, b []byte) {
	got, ok := scanBulkReply(b)
	var want []bulkResult
	err := json.Unmarshal(b, &want)
	if !ok {
		res, rerr := readBulkReply(bytes.NewReader(b))
		if err != nil {
			assert.Error(t, rerr, "%q", b)
		} else {
			assert.Equal(t, want, res, "%q", b)
		}
		return
	}
	require.NoError(t, err, "scanned %q, which encoding/json refuses", b)
	if len(want) == 0 {
		assert.Empty(t, got, "%q", b)
		return
	}
	assert.Equal(t, want, got, "%q", b)
}

// BenchmarkBulkReply reads a 500-document _bulk_docs reply with the
// scanner and with encoding/json.
//
//	go test -run '^$' -bench BulkReply ./primary/couchdb
func BenchmarkBulkReply(b *testing.B) {
	var buf bytes.Buffer
	buf.WriteByte('[')
	for i := range 500 {
		if i > 0 {
			buf.WriteByte(',')
		}
		fmt.Fprintf(&buf, `{"ok":true,"id":"guest/%032x","rev":"1-%032x"}`, i, i*7)
	}
	buf.WriteByte(']')
	reply := buf.Bytes()
	b.Run("scanner", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := readBulkReply(bytes.NewReader(reply)); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("encoding-json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var res []bulkResult
			if err := json.NewDecoder(bytes.NewReader(reply)).Decode(&res); err != nil {
				b.Fatal(err)
			}
		}
	})
}
