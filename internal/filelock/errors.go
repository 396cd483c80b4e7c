package filelock

import "errors"

// ErrHeld is TryLock's answer when someone else holds the lock.
var ErrHeld = errors.New("filelock: held by another open file")
