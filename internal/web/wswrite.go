package web

import (
	"encoding/binary"
	"sync"
	"syscall"
	"time"

	"github.com/gobwas/ws"

	"parley/internal/chat"
	"parley/internal/hub"
)

// writeBuffers hold frames while they are written. Pooled, so that an idle
// connection keeps no write buffer and a busy one allocates none per frame.
var writeBuffers = sync.Pool{New: func() any {
	b := make([]byte, 0, wsWriteBuffer)
	return &b
}}

func getWriteBuffer() *[]byte { return writeBuffers.Get().(*[]byte) }

// putWriteBuffer returns b to the pool, unless a large frame grew it: the pool would
// keep that size for every later small batch.
func putWriteBuffer(b *[]byte) {
	if cap(*b) > 2*maxBatch {
		return
	}
	*b = (*b)[:0]
	writeBuffers.Put(b)
}

// appendFrame appends one unmasked, final frame (a server's frame) to dst.
func appendFrame(dst []byte, op ws.OpCode, payload []byte) []byte {
	n := len(payload)
	switch {
	case n < 126:
		dst = append(dst, 0x80|byte(op), byte(n))
	case n <= 0xffff:
		dst = append(dst, 0x80|byte(op), 126)
		dst = binary.BigEndian.AppendUint16(dst, uint16(n))
	default:
		dst = append(dst, 0x80|byte(op), 127)
		dst = binary.BigEndian.AppendUint64(dst, uint64(n))
	}
	return append(dst, payload...)
}

// Add appends a text frame to the batch (hub.FrameWriter). Only the send queue's
// writer calls it, and Flush next.
func (c *frameConn) Add(frame []byte) bool {
	if c.batch == nil {
		c.batch = getWriteBuffer()
	}
	*c.batch = appendFrame(*c.batch, ws.OpText, frame)
	return len(*c.batch) >= maxBatch
}

// Flush writes the batch in one write (hub.FrameWriter).
func (c *frameConn) Flush() error {
	b := c.batch
	if b == nil {
		return nil
	}
	c.batch = nil
	var err error
	if c.partial { // TryFlush wrote the start of it and kept wmu
		c.partial = false
		err = c.writeLocked(*b, writeTimeout)
		c.wmu.Unlock()
	} else {
		err = c.write(*b, writeTimeout)
	}
	putWriteBuffer(b)
	return err
}

var _ hub.TryFrameWriter = (*frameConn)(nil)

// canTry sets the connection up for TryFlush if it is a TCP socket (on Unix).
func (c *frameConn) canTry() {
	sc, ok := c.conn.(syscall.Conn)
	if !ok || !canTryWrite {
		return
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return
	}
	c.raw, c.tryFn = raw, c.tryWrite
}

// TryFlush writes the batch if the socket takes all of it now (hub.TryFrameWriter).
// It never waits: not for wmu (a ping, the replay, the close frame being written),
// nor for room in the socket's buffer. What it could not write waits for Flush; if it
// wrote part of a frame, it keeps wmu locked for Flush, which writes the rest.
func (c *frameConn) TryFlush() (bool, error) {
	b := c.batch
	if b == nil {
		return true, nil
	}
	if c.raw == nil || !c.wmu.TryLock() {
		return false, nil
	}
	err := errClosing
	if !c.closing.Load() {
		c.moveDeadline(writeTimeout) // Flush may finish the write, with this deadline
		var n int
		if n, err = c.writeNow(*b); err == nil && n < len(*b) {
			if n == 0 {
				c.wmu.Unlock()
				return false, nil
			}
			*b = (*b)[:copy(*b, (*b)[n:])]
			c.partial = true
			return false, nil
		}
	}
	c.wmu.Unlock()
	c.batch = nil
	putWriteBuffer(b)
	return true, err
}

// writeNow writes what of p the socket takes now, without waiting; wmu must be held.
func (c *frameConn) writeNow(p []byte) (int, error) {
	c.tryP = p
	err := c.raw.Write(c.tryFn)
	if err == nil {
		err = c.tryErr
	}
	n := c.tryN
	c.tryP, c.tryErr = nil, nil
	return n, err
}

// tryWrite is raw.Write's callback: one write(2) of tryP on the non-blocking socket,
// done whatever it wrote (a full socket buffer writes nothing, EAGAIN).
func (c *frameConn) tryWrite(fd uintptr) bool {
	c.tryN, c.tryErr = tryWriteFD(fd, c.tryP)
	return true
}

// writeText writes one text frame now, outside the send queue (the welcome, the
// replay, a refusal).
func (c *frameConn) writeText(frame []byte) error { return c.writeFrame(ws.OpText, frame) }

// writeControl writes a ping or pong.
func (c *frameConn) writeControl(op ws.OpCode, payload []byte) error {
	return c.writeFrame(op, payload)
}

func (c *frameConn) writeFrame(op ws.OpCode, payload []byte) error {
	b := getWriteBuffer()
	*b = appendFrame(*b, op, payload)
	err := c.write(*b, writeTimeout)
	putWriteBuffer(b)
	return err
}

// deadlineSlack is how stale a write deadline may be before a write moves it:
// moving it costs a runtime timer update, so a busy connection moves it about once a
// second instead of once per write, and each write still gets between timeout −
// deadlineSlack and timeout.
const deadlineSlack = time.Second

// write writes p, whole frames, unless the close frame has gone out.
func (c *frameConn) write(p []byte, timeout time.Duration) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.closing.Load() {
		return errClosing
	}
	return c.writeLocked(p, timeout)
}

// writeLocked writes p under a deadline of about timeout; wmu must be held.
func (c *frameConn) writeLocked(p []byte, timeout time.Duration) error {
	c.moveDeadline(timeout)
	_, err := c.conn.Write(p)
	return err
}

// moveDeadline moves the write deadline to timeout from now if it is stale by more
// than deadlineSlack; wmu must be held.
func (c *frameConn) moveDeadline(timeout time.Duration) {
	if now := chat.Mono(); c.wdeadline-now < int64(timeout-deadlineSlack) {
		c.wdeadline = now + int64(timeout)
		_ = c.conn.SetWriteDeadline(time.Now().Add(timeout)) // a little later than wdeadline says
	}
}

// writeClose sends the close frame, once; nothing is sent after it. The reply to a
// client's close frame is sent the same way.
func (c *frameConn) writeClose(code ws.StatusCode, reason string) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.closing.Swap(true) {
		return nil
	}
	frame := appendFrame(make([]byte, 0, 4+len(reason)), ws.OpClose, ws.NewCloseFrameBody(code, reason))
	_ = c.conn.SetWriteDeadline(time.Now().Add(closeGrace))
	_, err := c.conn.Write(frame)
	return err
}
