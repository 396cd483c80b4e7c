package codec_test

import (
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-whisk/activationstore/codec"
	"github.com/go-whisk/activationstore/store"
)

// benchRecords: a typical invoker activation of about 1 KiB, and one
// carrying 1 MiB of logs (10 MB logs are allowed per activation).
func benchRecords(b *testing.B) map[string][]byte {
	typical := readVector(b, "activations/wa_invoker_with_logs.json")
	a, err := codec.UnmarshalActivation(typical)
	if err != nil {
		b.Fatal(err)
	}
	a.Logs = append(a.Logs, strings.Repeat("x", 700)) // bring it to ~1 KiB compact
	small, err := codec.MarshalActivation(a)
	if err != nil {
		b.Fatal(err)
	}
	a.Logs = nil
	line := "2020-09-13T12:26:40.150000000Z stdout: " + strings.Repeat("log line with \"quotes\" and tabs\t ", 2)
	for n := 0; n < 1<<20; n += len(line) + 3 {
		a.Logs = append(a.Logs, line+strconv.Itoa(n))
	}
	large, err := codec.MarshalActivation(a)
	if err != nil {
		b.Fatal(err)
	}
	return map[string][]byte{"typical": small, "logs-1MiB": large}
}

// BenchmarkRoundTrip: decode then encode one activation record, with the
// codec and, as a baseline in the same run, with encoding/json into
// map[string]any.
func BenchmarkRoundTrip(b *testing.B) {
	recs := benchRecords(b)
	for _, name := range []string{"typical", "logs-1MiB"} {
		rec := recs[name]
		b.Run(name+"/codec", func(b *testing.B) {
			b.SetBytes(int64(len(rec)))
			b.ReportAllocs()
			for b.Loop() {
				a, err := codec.UnmarshalActivation(rec)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := codec.MarshalActivation(a); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(name+"/map-baseline", func(b *testing.B) {
			b.SetBytes(int64(len(rec)))
			b.ReportAllocs()
			for b.Loop() {
				var m map[string]any
				if err := json.Unmarshal(rec, &m); err != nil {
					b.Fatal(err)
				}
				if _, err := json.Marshal(m); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkDecode: what the persister does per record (Decode of a result message).
func BenchmarkDecode(b *testing.B) {
	recs := benchRecords(b)
	for _, name := range []string{"typical", "logs-1MiB"} {
		a, _ := codec.UnmarshalActivation(recs[name])
		rec, _ := codec.MarshalResultMessage(testingTID, a)
		b.Run(name+"/codec", func(b *testing.B) {
			b.SetBytes(int64(len(rec)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := codec.Decode(rec); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(name+"/map-baseline", func(b *testing.B) {
			b.SetBytes(int64(len(rec)))
			b.ReportAllocs()
			for b.Loop() {
				var m map[string]any
				if err := json.Unmarshal(rec, &m); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkDocuments: write and read the typical activation's CouchDB
// document and its Elasticsearch document (the CouchDB one is the
// baseline: the Elasticsearch one adds the result as a string, the
// annotations as an object, "path" and "@timestamp"). The writer it
// replaced, which re-parsed the CouchDB document with encoding/json, took
// ~42 µs, 13.8 KB and 268 allocs to write this document, ~45 µs, 17.7 KB
// and 359 allocs to read it (commit 80be587, BenchmarkDocument).
func BenchmarkDocuments(b *testing.B) {
	a, err := codec.UnmarshalActivation(benchRecords(b)["typical"])
	if err != nil {
		b.Fatal(err)
	}
	updated := time.UnixMilli(1_700_000_000_000)
	for _, c := range []struct {
		name  string
		write func(*store.Activation, time.Time) ([]byte, error)
		read  func([]byte) error
	}{
		{"couchdb", codec.MarshalDocument, func(b []byte) error { _, err := codec.UnmarshalDocument(b); return err }},
		{"elasticsearch", codec.MarshalElasticsearchDocument, func(b []byte) error { _, err := codec.UnmarshalElasticsearchDocument(b); return err }},
	} {
		doc, err := c.write(a, updated)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(c.name+"/write", func(b *testing.B) {
			b.SetBytes(int64(len(doc)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := c.write(a, updated); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(c.name+"/read", func(b *testing.B) {
			b.SetBytes(int64(len(doc)))
			b.ReportAllocs()
			for b.Loop() {
				if err := c.read(doc); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
