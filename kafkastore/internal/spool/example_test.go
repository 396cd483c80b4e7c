package spool_test

import (
	"context"
	"fmt"
	"log"
	"os"

	"github.com/go-whisk/activationstore/kafkastore/internal/spool"
)

func Example() {
	dir, err := os.MkdirTemp("", "spool-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	ctx := context.Background()

	s, err := spool.Open(dir, spool.Options{MaxBytes: 64 << 20})
	if err != nil {
		log.Fatal(err)
	}
	for _, p := range []string{"first", "second"} {
		// nil: the record is fdatasynced and survives a crash.
		if err := s.Append(ctx, []byte(p)); err != nil {
			log.Fatal(err)
		}
	}
	recs, err := s.Read(ctx, 10, 1<<20)
	if err != nil {
		log.Fatal(err)
	}
	for _, r := range recs {
		fmt.Println(r.Seq, string(r.Payload))
	}
	s.Ack(recs[0].Seq) // "first" is delivered; "second" is replayed after a restart
	if err := s.Close(); err != nil {
		log.Fatal(err)
	}

	s, err = spool.Open(dir, spool.Options{MaxBytes: 64 << 20})
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()
	recs, err = s.Read(ctx, 10, 1<<20)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("after reopen:", recs[0].Seq, string(recs[0].Payload), s.Stats().Replayed)
	// Output:
	// 1 first
	// 2 second
	// after reopen: 2 second 1
}
