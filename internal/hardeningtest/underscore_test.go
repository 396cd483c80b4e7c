package hardeningtest

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/go-whisk/activationstore/codec"
	"github.com/go-whisk/activationstore/internal/activationtest"
	"github.com/go-whisk/activationstore/internal/couchtest"
	"github.com/go-whisk/activationstore/internal/kafkatest"
	"github.com/go-whisk/activationstore/internal/logtest"
	"github.com/go-whisk/activationstore/kafkastore/persister"
	"github.com/go-whisk/activationstore/primary/couchdb"
	"github.com/go-whisk/activationstore/store"
)

// Activations of actions whose names start with "_" (valid OpenWhisk
// EntityNames) are persisted, not dead-lettered, and listed by those names.
func TestPersisterKeepsUnderscoreNames(t *testing.T) {
	b := kafkatest.Start(t)
	topic := kafkatest.Topic(t, "completed-underscore")
	b.CreateTopic(t, topic, 1, nil)
	couch, err := couchdb.New(ctxFor(t, 30*time.Second), couchtest.URL(t), couchtest.DBName(t))
	if err != nil {
		t.Fatalf("couchdb.New: %v", err)
	}
	defer couch.Close()

	util := activationtest.New("guest")
	util.Name = "_util"
	util.Annotations = append(util.Annotations, store.Annotation{Key: "path", Value: json.RawMessage(`"guest/_pkg/_util"`)})
	bare := activationtest.New("guest/_sub")
	bare.Name = "_"
	var values [][]byte
	for _, a := range []*store.Activation{util, bare} {
		v, err := codec.MarshalResultMessage(codec.TransactionID{ID: "tid-underscore", Start: a.Start}, a)
		if err != nil {
			t.Fatal(err)
		}
		values = append(values, v)
	}
	produceValues(t, b.Addr(), topic, values)

	var logs logtest.Buffer
	p, err := persister.New(couch, persisterOptions(t, b.Addr(), debugLogger(&logs), topic)...)
	if err != nil {
		t.Fatal(err)
	}
	stop := runUntilCancel(t, p, 10*time.Second)
	deadline := time.Now().Add(30 * time.Second)
	for st := p.Stats(); st.Persisted < 2; st = p.Stats() {
		if st.DeadLettered > 0 || time.Now().After(deadline) {
			t.Fatalf("stats %+v; want 2 persisted, none dead-lettered; logs:\n%s", st, logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	stop()
	if st := p.Stats(); st.DeadLettered != 0 {
		t.Errorf("%d dead-lettered, want 0", st.DeadLettered)
	}
	ctx := ctxFor(t, 10*time.Second)
	got, err := couch.List(ctx, store.Query{Namespace: "guest", Name: "_pkg/_util"}, store.UserContext{})
	if err != nil || len(got) != 1 || got[0].ActivationID != util.ActivationID {
		t.Errorf("List guest _pkg/_util: %v %v; want %s", got, err, util.ActivationID)
	}
	if _, err := couch.Get(ctx, bare.Namespace, bare.ActivationID, store.UserContext{}); err != nil {
		t.Errorf("Get %s: %v", bare.DocID(), err)
	}
}
