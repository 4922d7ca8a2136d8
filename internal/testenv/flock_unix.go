//go:build unix

package testenv

import (
	"os"
	"syscall"
)

// lockExclusive waits for an exclusive lock of f, released when f is closed.
func lockExclusive(f *os.File) error { return syscall.Flock(int(f.Fd()), syscall.LOCK_EX) }
