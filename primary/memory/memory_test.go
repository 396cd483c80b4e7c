package memory_test

import (
	"testing"

	"github.com/go-whisk/activationstore/primary/memory"
	"github.com/go-whisk/activationstore/store"
	"github.com/go-whisk/activationstore/store/storetest"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store { return memory.New() })
}
