package web

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gobwas/ws"

	"parley/internal/chat"
	"parley/internal/hub"
	"parley/internal/wire"
)

// StatusRoomFull closes the connection of a third person entering a chat of two.
const StatusRoomFull ws.StatusCode = wire.CloseRoomFull

// Buffer sizes of a WebSocket. Chat frames are a few hundred bytes: one read of
// wsReadBuffer takes a whole frame (header and payload) in one system call, and a
// larger frame is read past the buffer. Write buffers are pooled, held only while a
// batch is written, so an idle connection keeps none.
const (
	wsReadBuffer  = 512
	wsWriteBuffer = 4 << 10  // a pooled buffer's starting size
	maxBatch      = 64 << 10 // a batch this large is written before more is added
)

var (
	// errTooBig is a message over the read limit; the connection is closed with 1009.
	errTooBig = errors.New("websocket: message over the read limit")
	// errPeerClosed is the client's close frame; the close handshake is done.
	errPeerClosed = errors.New("websocket: closed by the client")
	// errClosing refuses a data frame once the close frame is sent.
	errClosing = errors.New("websocket: closing")
)

// frameConn is the server's end of one WebSocket (RFC 6455) on a hijacked TCP
// connection. It does only what Parley needs, without a context or timer per frame:
// the read loop reads whole messages from a small buffer, answering pings and close
// frames on the way; frames queued together go out in one write under a write
// deadline set once per write; pings and idle timeouts are the caller's timer
// (wsConn.keepAlive), reading heardAt.
type frameConn struct {
	conn  net.Conn
	br    *bufio.Reader // wsReadBuffer bytes, starting with what followed the handshake
	limit int64         // the largest message accepted

	// Read state, touched only by the goroutine that reads.
	msg        []byte    // a fragmented message being put together
	msgOp      ws.OpCode // its op code
	fragmented bool
	closeSeen  bool         // the client's close frame has been read
	skip       int64        // payload bytes of a refused frame still to be read past
	heard      atomic.Int64 // when a frame was last read (chat.Mono); keepAlive reads it

	batch *[]byte // frames Added and not yet flushed; only the send queue's writer touches it

	// Writing without waiting (TryFlush), on a TCP connection only: raw is its
	// descriptor, tryFn the callback that writes tryP once (made once, so a write
	// allocates nothing) and reports tryN and tryErr. partial: a TryFlush wrote part
	// of the batch and left wmu locked for Flush, so nothing cuts in before the rest.
	raw     syscall.RawConn
	tryFn   func(fd uintptr) bool
	tryP    []byte
	tryN    int
	tryErr  error
	partial bool

	wmu       sync.Mutex  // one frame at a time: the send queue's, pings, pongs, close
	wdeadline int64       // the write deadline last set, on chat.Mono's clock (under wmu)
	closing   atomic.Bool // the close frame is sent (set under wmu); nothing is sent after it
}

var _ hub.FrameWriter = (*frameConn)(nil)

// upgrade completes the WebSocket handshake of r and returns the connection. net/http's
// 4 KiB read and write buffers are let go (bytes the client sent right after its
// handshake are carried over), so an idle connection keeps only wsReadBuffer.
func upgrade(w http.ResponseWriter, r *http.Request, limit int64) (*frameConn, error) {
	if !asksForWebSocket(r) {
		// Answered before hijacking, as for any request, and as a client expects.
		w.Header().Set("Connection", "Upgrade")
		w.Header().Set("Upgrade", "websocket")
		http.Error(w, "This address speaks WebSocket only.", http.StatusUpgradeRequired)
		return nil, errNotWebSocket
	}
	conn, rw, _, err := ws.HTTPUpgrader{Timeout: writeTimeout}.Upgrade(r, w)
	if err != nil {
		if conn != nil {
			_ = conn.Close()
		}
		return nil, err
	}
	var rd io.Reader = conn
	if n := rw.Reader.Buffered(); n > 0 {
		early, _ := rw.Reader.Peek(n)
		rd = &earlyReader{early: append([]byte(nil), early...), conn: conn}
	}
	c := &frameConn{conn: conn, br: bufio.NewReaderSize(rd, wsReadBuffer), limit: limit}
	c.heard.Store(chat.Mono())
	c.canTry()
	return c, nil
}

// errNotWebSocket is a request to the WebSocket address that is not a WebSocket handshake.
var errNotWebSocket = errors.New("websocket: not a WebSocket handshake")

// asksForWebSocket reports whether r asks to upgrade to WebSocket ("Connection" may
// list other tokens beside "Upgrade").
func asksForWebSocket(r *http.Request) bool {
	if !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
		return false
	}
	for _, v := range r.Header.Values("Connection") {
		for token := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(token), "upgrade") {
				return true
			}
		}
	}
	return false
}

// earlyReader reads the bytes net/http had buffered past the handshake, then the socket.
type earlyReader struct {
	early []byte
	conn  net.Conn
}

func (r *earlyReader) Read(p []byte) (int, error) {
	if len(r.early) == 0 {
		return r.conn.Read(p)
	}
	n := copy(p, r.early)
	r.early = r.early[n:]
	return n, nil
}

// silence is how long ago the client last sent a frame (of any kind, pongs included).
func (c *frameConn) silence() time.Duration { return time.Duration(chat.Mono() - c.heard.Load()) }

// drop closes the TCP connection, cutting short a blocked read or write.
func (c *frameConn) drop() { _ = c.conn.Close() }
