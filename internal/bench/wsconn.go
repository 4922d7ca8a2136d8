package bench

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"time"

	"github.com/gobwas/ws"
)

// WebSocket opcodes (RFC 6455 section 5.2).
const (
	opContinuation = 0x0
	opText         = 0x1
	opBinary       = 0x2
	opClose        = 0x8
	opPing         = 0x9
	opPong         = 0xa
)

const (
	readBufSize     = 4096 // read buffer of a connection; grows for a bigger frame
	maxClientHeader = 14   // 2 + 8 bytes of length + 4 of mask
)

var (
	errServerClosed = errors.New("websocket: close frame from the server")
	errFrameTooBig  = fmt.Errorf("websocket: frame over the read limit of %d bytes", readLimit)
	errProtocol     = errors.New("websocket: protocol error in a server frame")
	aLongTimeAgo    = time.Unix(1, 0) // a deadline that has passed: wakes a blocked read or write
)

// wsConn is the client end of one WebSocket, kept lean because the load generator
// shares the cores with the server it measures. Frames are read with plain reads into
// a buffer of the connection's own and parsed in place (server frames are not
// masked), so a read that returns several frames costs one system call and no
// allocation; frames are written, masked, from a second buffer reused for every frame,
// one write each. Timeouts are net.Conn deadlines, not a context per read.
//
// Only the goroutine that owns the connection reads and writes; another goroutine may
// only set deadlines or close nc.
type wsConn struct {
	nc     net.Conn
	rbuf   []byte
	r, w   int    // unread bytes are rbuf[r:w]
	frag   []byte // a fragmented message being put together
	fragOp byte   // its opcode; 0 when none is in progress
	wbuf   []byte // maxClientHeader bytes of room, then the payload being written
}

func newWSConn(nc net.Conn, buffered []byte) *wsConn {
	c := &wsConn{nc: nc, rbuf: make([]byte, max(readBufSize, len(buffered))),
		wbuf: make([]byte, maxClientHeader, 256)}
	c.w = copy(c.rbuf, buffered)
	return c
}

// readMessage returns the next text or binary message and its opcode, answering pings
// on the way. The payload is valid until the next call.
func (c *wsConn) readMessage() (byte, []byte, error) {
	for {
		fin, op, p, err := c.readFrame()
		if err != nil {
			return 0, nil, err
		}
		switch op {
		case opText, opBinary:
			if c.fragOp != 0 {
				return 0, nil, errProtocol
			}
			if fin {
				return op, p, nil
			}
			c.fragOp, c.frag = op, append(c.frag[:0], p...)
		case opContinuation:
			if c.fragOp == 0 {
				return 0, nil, errProtocol
			}
			if len(c.frag)+len(p) > readLimit {
				return 0, nil, errFrameTooBig
			}
			c.frag = append(c.frag, p...)
			if fin {
				op := c.fragOp
				c.fragOp = 0
				return op, c.frag, nil
			}
		case opPing:
			if err := c.writeFrame(opPong, p); err != nil {
				return 0, nil, err
			}
		case opPong:
		case opClose:
			return 0, nil, errServerClosed
		default:
			return 0, nil, errProtocol
		}
	}
}

// readFrame returns the next frame; its payload is valid until the next call.
func (c *wsConn) readFrame() (fin bool, op byte, payload []byte, err error) {
	for {
		b := c.rbuf[c.r:c.w]
		need := 2
		if len(b) >= 2 {
			if b[0]&0x70 != 0 { // no extension was negotiated, so no RSV bit may be set
				return false, 0, nil, errProtocol
			}
			fin, op = b[0]&0x80 != 0, b[0]&0x0f
			masked := b[1]&0x80 != 0
			n := uint64(b[1] & 0x7f)
			hl := 2
			switch n {
			case 126:
				hl = 4
			case 127:
				hl = 10
			}
			if masked {
				hl += 4
			}
			need = hl
			if len(b) >= hl {
				switch n {
				case 126:
					n = uint64(binary.BigEndian.Uint16(b[2:]))
				case 127:
					n = binary.BigEndian.Uint64(b[2:])
				}
				if n > readLimit {
					return false, 0, nil, errFrameTooBig
				}
				if op >= opClose && (n > 125 || !fin) {
					return false, 0, nil, errProtocol
				}
				need = hl + int(n)
				if len(b) >= need {
					payload = b[hl:need]
					if masked { // servers must not mask; unmask rather than guess
						ws.Cipher(payload, [4]byte(b[hl-4:hl]), 0)
					}
					c.r += need
					return fin, op, payload, nil
				}
			}
		}
		if err := c.fill(need); err != nil {
			return false, 0, nil, err
		}
	}
}

// fill reads at least once more, making room for a frame of need bytes at c.r.
func (c *wsConn) fill(need int) error {
	if c.r == c.w {
		c.r, c.w = 0, 0
	} else if len(c.rbuf)-c.r < need || c.w == len(c.rbuf) {
		if need > len(c.rbuf) {
			nb := make([]byte, max(need, 2*len(c.rbuf)))
			c.w = copy(nb, c.rbuf[c.r:c.w])
			c.rbuf = nb
		} else {
			c.w = copy(c.rbuf, c.rbuf[c.r:c.w])
		}
		c.r = 0
	}
	n, err := c.nc.Read(c.rbuf[c.w:])
	c.w += n
	if n > 0 {
		return nil // an error comes back again on the next read
	}
	if err == nil {
		err = errProtocol // a reader returning 0, nil: do not spin
	}
	return err
}

// payloadBuf returns the write buffer for a payload to be appended to, then written
// with writeBuf: the frame's header goes in the room kept in front of it.
func (c *wsConn) payloadBuf() []byte { return c.wbuf[:maxClientHeader] }

// writeFrame writes one frame of op with payload p (copied, so p may be anything).
func (c *wsConn) writeFrame(op byte, p []byte) error {
	return c.writeBuf(op, append(c.payloadBuf(), p...))
}

// writeBuf writes buf[maxClientHeader:] as one final, masked frame of op. buf is a
// payloadBuf with the payload appended; it is kept for the next frame.
func (c *wsConn) writeBuf(op byte, buf []byte) error {
	c.wbuf = buf
	p := buf[maxClientHeader:]
	n := len(p)
	hl := 6
	switch {
	case n > 0xffff:
		hl = 14
	case n > 125:
		hl = 8
	}
	h := buf[maxClientHeader-hl : maxClientHeader]
	h[0] = 0x80 | op
	switch hl {
	case 6:
		h[1] = 0x80 | byte(n)
	case 8:
		h[1] = 0x80 | 126
		binary.BigEndian.PutUint16(h[2:], uint16(n))
	default:
		h[1] = 0x80 | 127
		binary.BigEndian.PutUint64(h[2:], uint64(n))
	}
	key := h[hl-4:]
	binary.LittleEndian.PutUint32(key, rand.Uint32())
	ws.Cipher(p, [4]byte(key), 0)
	_, err := c.nc.Write(buf[maxClientHeader-hl:])
	return err
}
