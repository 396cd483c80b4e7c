package store_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/go-whisk/activationstore/primary/memory"
	"github.com/go-whisk/activationstore/store"
)

func ExampleValidateActivation() {
	a := valid()
	a.Namespace = "_design/x"
	err := store.ValidateActivation(a)
	var ie *store.InvalidError
	fmt.Println(errors.Is(err, store.ErrInvalid), errors.As(err, &ie) && ie.Field == "namespace")
	// Output: true true
}

func ExampleStoreAfterCheck() {
	levels := store.Levels{Blocking: store.StoreFailures, NonBlocking: store.StoreAlways}
	s := memory.New()
	_, stored, err := store.StoreAfterCheck(context.Background(), s, valid(), true, levels, store.UserContext{})
	fmt.Println(stored, err)
	// Output: false <nil>
}
