package web

import (
	"encoding/binary"
	"io"
	"time"

	"github.com/gobwas/ws"

	"parley/internal/chat"
)

// readMessage returns the client's next data message (a text or binary frame, or the
// fragments of one put together) and its op code. The payload is valid until the next
// call. Pings are answered and pongs noted on the way; a close frame is answered and
// ends the reading with errPeerClosed. Once the server's close frame is sent, data
// messages are read and dropped while waiting for the client's close frame. Errors:
// errTooBig, a ws.ProtocolError (close with 1002), or the connection's read error.
func (c *frameConn) readMessage() (ws.OpCode, []byte, error) {
	for {
		h, err := c.readHeader()
		if err != nil {
			return 0, nil, err
		}
		c.heard.Store(chat.Mono())
		if err := ws.CheckHeader(h, c.state()); err != nil {
			c.skip = h.Length // the frames after it can still be read, for the close handshake
			return 0, nil, err
		}
		if h.OpCode.IsControl() {
			if err := c.control(h); err != nil {
				return 0, nil, err
			}
			continue
		}
		op, msg, err := c.data(h)
		if err != nil {
			return 0, nil, err
		}
		if msg != nil && !c.closing.Load() {
			return op, msg, nil
		}
	}
}

// state is what ws.CheckHeader checks against: frames from a client must be masked,
// and continuation frames come only inside a fragmented message.
func (c *frameConn) state() ws.State {
	if c.fragmented {
		return ws.StateServerSide | ws.StateFragmented
	}
	return ws.StateServerSide
}

// readHeader parses a frame header in place in the read buffer: no allocation.
func (c *frameConn) readHeader() (ws.Header, error) {
	for c.skip > 0 { // the payload of a frame refused unread
		n, err := c.br.Discard(int(min(c.skip, 1<<30)))
		c.skip -= int64(n)
		if err != nil {
			return ws.Header{}, err
		}
	}
	b, err := c.br.Peek(2)
	if err != nil {
		return ws.Header{}, err
	}
	h := ws.Header{Fin: b[0]&0x80 != 0, Rsv: b[0] >> 4 & 0x7, OpCode: ws.OpCode(b[0] & 0x0f), Masked: b[1]&0x80 != 0}
	size, length := 2, int64(b[1]&0x7f)
	switch length {
	case 126:
		size += 2
	case 127:
		size += 8
	}
	if h.Masked {
		size += 4
	}
	if b, err = c.br.Peek(size); err != nil {
		return h, err
	}
	switch length {
	case 126:
		length = int64(binary.BigEndian.Uint16(b[2:]))
	case 127:
		if b[2]&0x80 != 0 {
			return h, ws.ErrHeaderLengthMSB
		}
		length = int64(binary.BigEndian.Uint64(b[2:]))
	}
	h.Length = length
	if h.Masked {
		copy(h.Mask[:], b[size-4:size])
	}
	_, _ = c.br.Discard(size)
	return h, nil
}

// payload reads and unmasks the frame's payload. One that fits the read buffer is
// unmasked in place there (valid until the next read); a larger one gets its own slice.
func (c *frameConn) payload(h ws.Header) ([]byte, error) {
	n := int(h.Length)
	if n <= c.br.Size() {
		p, err := c.br.Peek(n)
		if err != nil {
			return nil, err
		}
		_, _ = c.br.Discard(n)
		ws.Cipher(p, h.Mask, 0)
		return p, nil
	}
	p := make([]byte, n)
	if _, err := io.ReadFull(c.br, p); err != nil {
		return nil, err
	}
	ws.Cipher(p, h.Mask, 0)
	return p, nil
}

// data reads a text, binary or continuation frame. It returns the message once its
// last frame is read, and a nil message while a fragmented one is incomplete.
func (c *frameConn) data(h ws.Header) (ws.OpCode, []byte, error) {
	if int64(len(c.msg))+h.Length > c.limit {
		c.skip, c.msg = h.Length, nil
		return 0, nil, errTooBig
	}
	p, err := c.payload(h)
	if err != nil {
		return 0, nil, err
	}
	if h.Fin && !c.fragmented {
		return h.OpCode, p, nil // the usual case: a whole message in one frame
	}
	if !c.fragmented {
		c.fragmented, c.msgOp = true, h.OpCode
	}
	c.msg = append(c.msg, p...)
	if !h.Fin {
		return 0, nil, nil
	}
	msg := c.msg
	c.msg, c.fragmented = nil, false // not kept: an idle connection holds no message buffer
	return c.msgOp, msg, nil
}

// control acts on a ping, pong or close frame.
func (c *frameConn) control(h ws.Header) error {
	p, err := c.payload(h)
	if err != nil {
		return err
	}
	switch h.OpCode {
	case ws.OpPing:
		_ = c.writeControl(ws.OpPong, p) // a broken connection shows in the next read
	case ws.OpClose:
		c.closeSeen = true
		code, reason := closeReply(p)
		_ = c.writeClose(code, reason) // a no-op when the server closed first
		return errPeerClosed
	}
	return nil // a pong: heard is all it is for
}

// closeReply is the close frame that answers the client's: its own code, or 1002 when
// the client's close frame is malformed.
func closeReply(p []byte) (ws.StatusCode, string) {
	if len(p) == 0 {
		return ws.StatusNormalClosure, ""
	}
	code, reason := ws.ParseCloseFrameDataUnsafe(p)
	if len(p) < 2 || ws.CheckCloseFrameData(code, reason) != nil {
		return ws.StatusProtocolError, "bad close frame"
	}
	return code, ""
}

// linger waits up to d for the client's answer to the server's close frame, dropping
// what it sends meanwhile, so the TCP connection is not closed under unread bytes
// (a reset could cost the client the close frame it has not read yet).
func (c *frameConn) linger(d time.Duration) {
	if c.closeSeen {
		return
	}
	_ = c.conn.SetReadDeadline(time.Now().Add(d))
	for {
		if _, _, err := c.readMessage(); err != nil {
			return
		}
	}
}
