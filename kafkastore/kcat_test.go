//go:build kcat

// The kcat cross-check reads what Store publishes with an independent Kafka
// client (librdkafka). It is behind the kcat build tag so that a plain
// "go test ./..." needs no kcat; .ci/run installs kcat and passes
// -tags kcat, and there the test fails when kcat is missing.

package kafkastore_test

import (
	"bytes"
	"encoding/json"
	"os/exec"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/go-whisk/activationstore/codec"
	"github.com/go-whisk/activationstore/internal/activationtest"
	"github.com/go-whisk/activationstore/internal/kafkatest"
	"github.com/go-whisk/activationstore/kafkastore"
	"github.com/go-whisk/activationstore/primary/memory"
	"github.com/go-whisk/activationstore/store"
)

func TestStoreRecordReadByKcat(t *testing.T) {
	kcat, err := exec.LookPath("kcat")
	require.NoError(t, err, "kcat is required by this test: install it (Debian/Ubuntu: apt-get install -y kcat)")
	b := kafkatest.Start(t)
	s, topic := newStore(t, b, memory.New(), kafkastore.WithTopicPartitions(1))
	a := activationtest.New("guest")
	_, err = s.Store(ctxT(t), a, store.UserContext{TransactionID: "kcattid"})
	require.NoError(t, err)

	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctxT(t), kcat, "-b", b.Addr(), "-C", "-t", topic, "-p", "0", "-o", "beginning",
		"-c", "1", "-e", "-J", "-X", "broker.address.family=v4")
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	require.NoError(t, cmd.Run(), "kcat: %s", stderr.String())
	// kcat exits 0 on some consume failures: its stderr tells.
	require.NotContains(t, strings.ToLower(stderr.String()), "error", "kcat stderr")

	var env struct {
		Key     string   `json:"key"`
		Payload string   `json:"payload"`
		Headers []string `json:"headers"`
		Offset  int64    `json:"offset"`
	}
	require.NoError(t, json.Unmarshal(stdout.Bytes(), &env), "kcat -J output %q", stdout.String())
	assert.Equal(t, a.ActivationID, env.Key)
	assert.Equal(t, []string{
		kafkastore.HeaderContentType, kafkastore.ContentTypeResultMessage,
		kafkastore.HeaderNamespace, "guest",
		kafkastore.HeaderActivationID, a.ActivationID,
	}, env.Headers)
	msg, err := codec.Decode([]byte(env.Payload))
	require.NoError(t, err, "the payload kcat read decodes")
	assert.Equal(t, a.DocID(), msg.Activation().DocID())
	assert.Equal(t, "kcattid", msg.(*codec.ResultMessage).TransID.ID)
}
