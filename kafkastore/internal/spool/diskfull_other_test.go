//go:build !linux

package spool

import "errors"

func diskFullChild(string) error {
	return errors.New("the disk-full test mounts a tmpfs in a Linux mount namespace")
}
