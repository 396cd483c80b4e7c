package activationtest_test

import (
	"testing"

	"github.com/go-whisk/activationstore/codec"
	"github.com/go-whisk/activationstore/internal/activationtest"
	"github.com/go-whisk/activationstore/store"
)

func TestNewIsValidFreshAndComplete(t *testing.T) {
	seen := map[string]bool{}
	for range 1000 {
		a := activationtest.New("guest")
		if err := store.ValidateActivation(a); err != nil {
			t.Fatalf("New returned an invalid activation: %v", err)
		}
		if seen[a.ActivationID] {
			t.Fatalf("New returned id %s twice", a.ActivationID)
		}
		seen[a.ActivationID] = true
	}
	a := activationtest.New("guest/pkg")
	if len(a.Logs) == 0 || len(a.Annotations) < 2 || a.Duration == nil {
		t.Errorf("New leaves optional fields empty: logs %v, annotations %v, duration %v", a.Logs, a.Annotations, a.Duration)
	}
	b, err := codec.MarshalResultMessage(codec.TransactionID{ID: "tid", Start: a.Start}, a)
	if err != nil {
		t.Fatalf("MarshalResultMessage: %v", err)
	}
	m, err := codec.Decode(b)
	if err != nil {
		t.Fatalf("Decode: %v", err)
	}
	if got := m.Activation(); got.DocID() != a.DocID() || string(got.Annotations[0].Value) != `"guest/pkg/hello"` {
		t.Errorf("round trip: got %s with annotations %v", got.DocID(), got.Annotations)
	}
}
