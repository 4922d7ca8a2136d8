package cli

import (
	"errors"
	"io"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"parley/internal/metrics"
)

// DefaultMaxConns is how many connections (WebSockets included) one replica keeps open
// by default: the 10,000 idle WebSockets one replica is sized for (docs/BENCHMARKS.md,
// about 14 KiB each) with 60 % headroom for page loads and reconnects, about 230 MiB in
// all, and below the usual open-file limits of a small machine, so the limit answers
// before the kernel refuses.
const DefaultMaxConns = 16384

// serverFullReply is what a connection beyond the limit gets before it is closed.
const serverFullReply = "Parley is at its connection limit right now. Please try again in a moment.\n"

var serverFullResponse = "HTTP/1.1 503 Service Unavailable\r\n" +
	"Content-Type: text/plain; charset=utf-8\r\nRetry-After: 5\r\nConnection: close\r\n" +
	"Content-Length: " + strconv.Itoa(len(serverFullReply)) + "\r\n\r\n" + serverFullReply

// maxRefusing bounds the connections being answered 503 at once; beyond it a
// connection is closed without an answer, so a flood costs no more than this.
const maxRefusing = 256

// limitListener keeps at most max connections open: a connection beyond that is
// answered 503 and closed, so a flood of connections cannot use up this replica's
// memory or file descriptors. A connection counts until it is closed, hijacked
// (WebSocket) or not.
type limitListener struct {
	net.Listener
	max      int64
	metrics  *metrics.Metrics
	open     atomic.Int64
	refusing atomic.Int64
}

// limitConns wraps ln; max ≤ 0 means no limit.
func limitConns(ln net.Listener, max int, m *metrics.Metrics) net.Listener {
	if max <= 0 {
		return ln
	}
	return &limitListener{Listener: ln, max: int64(max), metrics: m}
}

// Accept returns the next connection within the limit, answering the others.
func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if l.open.Add(1) <= l.max {
			return &countedConn{Conn: c, l: l}, nil
		}
		l.open.Add(-1)
		l.metrics.Refused(metrics.ReasonServerFull)
		if l.refusing.Add(1) > maxRefusing {
			l.refusing.Add(-1)
			_ = c.Close()
			continue
		}
		go l.refuse(c)
	}
}

// refuse reads what the client sent of its request (so that closing does not reset
// the connection under the answer), answers 503 and closes, all within a second.
func (l *limitListener) refuse(c net.Conn) {
	defer l.refusing.Add(-1)
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	var buf [1024]byte
	_, _ = c.Read(buf[:])
	_, _ = io.WriteString(c, serverFullResponse)
}

// countedConn gives its place back when closed (once, however often Close is called).
type countedConn struct {
	net.Conn
	l    *limitListener
	once sync.Once
}

// Close implements net.Conn.
func (c *countedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.l.open.Add(-1) })
	return err
}

// CloseWrite lets net/http half-close the connection when it can, as on a bare TCP
// connection.
func (c *countedConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// SyscallConn gives the socket's descriptor, as on a bare TCP connection: the
// WebSocket writer writes through it without waiting (web.frameConn.TryFlush).
func (c *countedConn) SyscallConn() (syscall.RawConn, error) {
	sc, ok := c.Conn.(syscall.Conn)
	if !ok {
		return nil, errors.ErrUnsupported
	}
	return sc.SyscallConn()
}
