package main

import (
	"io"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Exactly one primary: CouchDB or Elasticsearch, from flags or environment.
func TestParsePrimaryChoice(t *testing.T) {
	const es = "http://elastic:" + testPassword + "@127.0.0.1:9200"
	for _, c := range []struct {
		name    string
		env     map[string]string
		args    []string
		want    string // kind, or "" for an error
		errText string
	}{
		{"couchdb", map[string]string{"COUCHDB_URL": "http://127.0.0.1:5984"}, nil, "CouchDB", ""},
		{"elasticsearch env", map[string]string{"ELASTICSEARCH_URL": es}, nil, "Elasticsearch", ""},
		{"elasticsearch flag", nil, []string{"-elasticsearch", "http://127.0.0.1:9200,http://127.0.0.1:9201"}, "Elasticsearch", ""},
		{"both", map[string]string{"COUCHDB_URL": "http://127.0.0.1:5984", "ELASTICSEARCH_URL": es}, nil, "", "either -couchdb"},
		{"none", nil, nil, "", "ELASTICSEARCH_URL"},
		{"bad url", map[string]string{"ELASTICSEARCH_URL": "127.0.0.1:9200"}, nil, "", "must look like"},
	} {
		t.Run(c.name, func(t *testing.T) {
			env := map[string]string{"PERSISTER_BROKERS": "127.0.0.1:9092"}
			for k, v := range c.env {
				env[k] = v
			}
			s, err := parse(c.args, envOf(env), io.Discard)
			if c.want == "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), c.errText)
				assert.NotContains(t, err.Error(), testPassword)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, c.want, s.kind())
			assert.Equal(t, "openwhisk-%s", s.indexPattern)
		})
	}
	assert.NotContains(t, redactedURLs(es+",http://u:"+testPassword+"@h:1"), testPassword)
}
