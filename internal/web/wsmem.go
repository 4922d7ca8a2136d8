package web

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"sync"
)

// wsBufferSize is the size of each of a WebSocket's read and write buffers. net/http
// hands a hijacked connection 4 KiB of each, and the WebSocket keeps them for as long
// as the chat is open: 8 KiB of an idle connection. Chat frames are a few hundred
// bytes; a larger one is read or written past the buffer, in one more system call.
const wsBufferSize = 1024

// smallBuffers gives websocket.Accept a hijacked connection with wsBufferSize
// buffers instead of net/http's, which become garbage once the handler returns.
type smallBuffers struct{ http.ResponseWriter }

// Unwrap lets http.ResponseController reach the wrapped writer.
func (w smallBuffers) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Hijack implements http.Hijacker. Bytes the client sent right after its handshake
// may already sit in net/http's reader; they are carried over, ahead of the socket.
func (w smallBuffers) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	conn, brw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, err
	}
	n := brw.Reader.Buffered()
	if n == 0 {
		return conn, bufio.NewReadWriter(bufio.NewReaderSize(conn, wsBufferSize), bufio.NewWriterSize(conn, wsBufferSize)), nil
	}
	early, _ := brw.Reader.Peek(n)
	br := bufio.NewReaderSize(io.MultiReader(bytes.NewReader(bytes.Clone(early)), conn), max(wsBufferSize, n))
	if _, err := br.Peek(n); err != nil { // buffered, so Accept finds them in br
		_ = conn.Close()
		return nil, nil, err
	}
	return conn, bufio.NewReadWriter(br, bufio.NewWriterSize(conn, wsBufferSize)), nil
}

// connSlot is a person's counted WebSocket (limitConns). The WebSocket handler takes
// it over, since the connection outlives the handler (see serveWS), and gives it back
// when the connection ends; a request that did not become a connection gives it back
// when the handler returns.
type connSlot struct {
	once    sync.Once
	taken   bool
	release func()
}

type connSlotKey struct{}

// withConnSlot returns r carrying a slot that release gives back.
func withConnSlot(r *http.Request, release func()) (*http.Request, *connSlot) {
	slot := &connSlot{release: release}
	return r.WithContext(context.WithValue(r.Context(), connSlotKey{}, slot)), slot
}

// done gives the slot back unless the handler took it over.
func (s *connSlot) done() {
	if !s.taken {
		s.give()
	}
}

func (s *connSlot) give() { s.once.Do(s.release) }

// takeConnSlot takes over r's slot and returns the func that gives it back (once);
// a no-op when the request carries none.
func takeConnSlot(r *http.Request) func() {
	slot, ok := r.Context().Value(connSlotKey{}).(*connSlot)
	if !ok {
		return func() {}
	}
	slot.taken = true
	return slot.give
}
