// Package testvolume sizes the heavy tests: the chaos, loss and kill-loop
// tests that drive real clusters through faults. Each runs at one of three
// volumes, chosen once per test binary:
//
//   - Full, when ACTIVATIONSTORE_TEST_VOLUME=full (CI sets it): the
//     volumes behind the figures in the README.
//   - Short, under go test -short: the fault still happens, with the
//     fewest records that still cross it.
//   - Default otherwise: what a contributor's plain go test ./... runs,
//     sized so that every package fits go test's default 10-minute
//     timeout on a 2-CPU machine while the packages run side by side.
//
// A test never skips for want of volume: every level exercises its fault.
package testvolume

import (
	"fmt"
	"os"
	"testing"
)

// Env is the one switch: set it to "full" for the full volumes.
const Env = "ACTIVATIONSTORE_TEST_VOLUME"

// Level is a test binary's volume.
type Level int

const (
	Short Level = iota
	Default
	Full
)

func (l Level) String() string {
	switch l {
	case Short:
		return "short"
	case Full:
		return "full"
	default:
		return "default"
	}
}

// Current is the volume this test binary runs at. The switch wins over
// -short, so that CI's -short passes can still ask for full volumes.
// An unknown value of Env panics: a typo must not quietly shrink CI.
func Current() Level {
	switch v := os.Getenv(Env); v {
	case "full":
		return Full
	case "", "default":
		if testing.Short() {
			return Short
		}
		return Default
	case "short":
		return Short
	default:
		panic(fmt.Sprintf("testvolume: %s=%q: want full, default or short", Env, v))
	}
}

// Pick returns the value for the current level.
func Pick[T any](short, def, full T) T {
	switch Current() {
	case Short:
		return short
	case Full:
		return full
	default:
		return def
	}
}
