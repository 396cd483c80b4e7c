package store

import (
	"context"
	"fmt"
	"strings"
)

// Level decides which activations are stored, as OpenWhisk's ActivationStoreLevel.
type Level int

const (
	// StoreAlways stores every activation (OpenWhisk's default).
	StoreAlways Level = iota
	// StoreFailures stores activations whose response is not a success.
	StoreFailures
	// StoreFailuresNotApplicationErrors stores developer and whisk errors only.
	StoreFailuresNotApplicationErrors
)

var levelNames = [...]string{"STORE_ALWAYS", "STORE_FAILURES", "STORE_FAILURES_NOT_APPLICATION_ERRORS"}

func (l Level) String() string {
	if l >= 0 && int(l) < len(levelNames) {
		return levelNames[l]
	}
	return fmt.Sprintf("Level(%d)", int(l))
}

// ParseLevel reads a level name case-insensitively, as OpenWhisk's
// ActivationStoreLevel.valueOf. The error matches ErrInvalid.
func ParseLevel(s string) (Level, error) {
	for i, n := range levelNames {
		if strings.EqualFold(s, n) {
			return Level(i), nil
		}
	}
	return 0, invalid("store level", s, "want one of "+strings.Join(levelNames[:], ", "))
}

// admits reports whether a response of the given status code is stored at level l.
func (l Level) admits(statusCode int) bool {
	switch l {
	case StoreFailures:
		return statusCode != StatusSuccess
	case StoreFailuresNotApplicationErrors:
		return statusCode == StatusDeveloperError || statusCode == StatusWhiskError
	default:
		return true
	}
}

// Levels are the store levels for blocking and non-blocking activations
// (whisk.activation.store-blocking-result-level and
// store-non-blocking-result-level). The zero value stores everything.
type Levels struct {
	Blocking    Level
	NonBlocking Level
}

// ShouldStore is OpenWhisk's storeAfterCheck decision: the user's
// storeActivations limit must allow it, and then extra logging, or the level
// for the activation's blocking-ness, must admit it.
func ShouldStore(a *Activation, blocking bool, levels Levels, uc UserContext) bool {
	if uc.StoreActivations != nil && !*uc.StoreActivations {
		return false
	}
	if uc.ExtraLogging {
		return true
	}
	if blocking {
		return levels.Blocking.admits(a.Response.StatusCode)
	}
	return levels.NonBlocking.admits(a.Response.StatusCode)
}

// StoreAfterCheck stores a in s when ShouldStore admits it. When it does not,
// it returns the document id without a revision and stored false, as
// OpenWhisk's storeAfterCheck.
func StoreAfterCheck(ctx context.Context, s Store, a *Activation, blocking bool, levels Levels, uc UserContext) (info DocInfo, stored bool, err error) {
	if !ShouldStore(a, blocking, levels, uc) {
		return DocInfo{ID: a.DocID()}, false, nil
	}
	info, err = s.Store(ctx, a, uc)
	return info, err == nil, err
}
