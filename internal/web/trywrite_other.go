//go:build !unix

package web

import "errors"

// canTryWrite: elsewhere (Windows) a socket is not written without waiting; every
// batch is written by the send queue's writer goroutine, with its deadline.
const canTryWrite = false

func tryWriteFD(uintptr, []byte) (int, error) {
	return 0, errors.New("writing without waiting is not supported here")
}
