//go:build unix

package web

import (
	"os"
	"syscall"
)

// canTryWrite: TryFlush writes to the non-blocking socket itself (tryWriteFD).
const canTryWrite = true

// tryWriteFD makes one write(2) of p on the non-blocking socket fd and returns what
// it wrote: nothing, and no error, when the socket's buffer is full (EAGAIN).
func tryWriteFD(fd uintptr, p []byte) (int, error) {
	n, err := syscall.Write(int(fd), p)
	if err == syscall.EAGAIN || err == syscall.EINTR {
		return 0, nil
	}
	if err != nil {
		return 0, os.NewSyscallError("write", err)
	}
	return n, nil
}
