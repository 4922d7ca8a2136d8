package web

import (
	"errors"

	"github.com/gobwas/ws"

	"parley/internal/chat"
	"parley/internal/hub"
	"parley/internal/wire"
)

// readLoop reads client messages until the connection ends and hands each to the
// chat layer, which may pause before returning (flow control): meanwhile nothing is
// read, and TCP slows the client down.
func (c *wsConn) readLoop() {
	for {
		op, data, err := c.conn.readMessage()
		if err != nil {
			c.closeFor(err)
			return
		}
		if op != ws.OpText {
			c.client.Reject(chat.Errorf(chat.EInvalidFrame, "Frames must be JSON text."), "")
			continue
		}
		now := c.conn.heard.Load() // the clock read for the frame, for all of its stamps
		c.client.HandleFrameAt(data, now)
		hub.FlushOverdue(now) // help write the queues that waited too long (flusher.go)
	}
}

// closeFor closes the connection after a read error that is the client's doing: 1009
// for a message over the read limit, 1002 for a frame that breaks the protocol
// (unmasked, reserved bits or op codes, a stray continuation).
func (c *wsConn) closeFor(err error) {
	var protocol ws.ProtocolError
	switch {
	case errors.Is(err, errTooBig):
		c.close(ws.StatusMessageTooBig, "message too big")
	case errors.As(err, &protocol):
		c.close(ws.StatusProtocolError, string(protocol))
	case errors.Is(err, ws.ErrHeaderLengthMSB):
		c.close(ws.StatusProtocolError, "bad frame length")
	}
}

// Send queues a frame the server sends on its own (room.Transport).
func (c *wsConn) Send(frame []byte) bool { return c.queue.Send(frame) }

// Reply queues an answer to the client's frame (room.Transport).
func (c *wsConn) Reply(frame []byte) bool { return c.queue.Reply(frame) }

// Hold and Release batch frames into one write (room.Transport).
func (c *wsConn) Hold()    { c.queue.Hold() }
func (c *wsConn) Release() { c.queue.Release() }

// Write sends one frame now, outside the send queue: the welcome, the replay, a
// refusal while entering (room.Transport).
func (c *wsConn) Write(frame []byte) error { return c.conn.writeText(frame) }

// Close closes the connection with code (room.Transport). A connection too slow to
// keep up (1008) is aborted: its writer may be stuck behind the slow client.
func (c *wsConn) Close(code int, reason string) {
	if code == wire.ClosePolicy {
		c.abort(reason)
		return
	}
	c.close(ws.StatusCode(code), reason)
}
