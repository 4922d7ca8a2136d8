package room

import (
	"time"

	"parley/internal/chat"
	"parley/internal/wire"
)

// handler acts on one kind of client frame. Its error, if any, goes back to this
// client only, as an error frame carrying the frame's id.
type handler struct {
	handle func(c *Client, f wire.ClientFrame) error
	// free frames skip the rate limit (a signal that is cheap and rate-limited by its
	// own rules, such as typing); everything that touches the store is limited.
	free bool
}

// handlers maps each client frame type to its handler. A new signal (typing, received,
// read: docs/protocol.md "v1.1") is one entry here and one method on Client; its
// server frames go out through c.t.Send (to this connection) or c.r.o.Hub.Publish
// (to everyone in the chat, on every replica).
var handlers = map[string]handler{
	wire.TypeSend: {handle: (*Client).handleSend},
	wire.TypeBye:  {handle: (*Client).handleBye},
	wire.TypeEnd:  {handle: (*Client).handleEnd},
	// The v1.1 signals bound themselves (signals.go): typing to one per TypingEvery,
	// receipts to one store write per ReceiptEvery.
	wire.TypeTyping:   {handle: (*Client).handleTyping, free: true},
	wire.TypeReceived: {handle: (*Client).handleReceived, free: true},
	wire.TypeRead:     {handle: (*Client).handleRead, free: true},
}

// HandleFrame acts on one frame the client sent. It is called by the connection's
// reader, one frame at a time, and may pause (see admit): while it does, the reader
// does not read, and TCP slows the client down. Every refusal goes to this client only.
func (c *Client) HandleFrame(data []byte) { c.HandleFrameAt(data, chat.Mono()) }

// HandleFrameAt is HandleFrame for a frame read at now (chat.Mono), for a reader
// that has read the clock for the frame already.
func (c *Client) HandleFrameAt(data []byte, now int64) {
	f, err := wire.DecodeClient(data)
	if err != nil {
		c.Reject(err, "")
		return
	}
	h, known := handlers[f.Type]
	if !h.free {
		var ok bool
		if now, ok = c.admit(f.ID, now); !ok {
			return
		}
	}
	if !known {
		c.Reject(chat.Errorf(chat.EInvalidFrame, "Unknown frame type %q.", truncate(f.Type, 32)), f.ID)
		return
	}
	c.watchStore(now)
	err = h.handle(c, f)
	c.busySince.Store(0)
	if err != nil {
		c.Reject(err, f.ID)
	}
}

// Reject tells this client only that its frame (id, if it had one) was refused.
func (c *Client) Reject(err error, id string) {
	if code := chat.ErrorCode(err); code == chat.EInternal || code == chat.EUnavailable {
		c.r.log.Error("frame failed", "session", c.sess.ID, "code", code, "err", err)
	}
	c.countRefusal(err)
	c.t.Reply(wire.Error(err, id))
}

// watchStore bounds the store calls of one frame by StoreTimeout without a context
// or a timer update of their own per frame: the frame's start is noted, and one timer
// per connection, armed while frames come, checks at most every StoreTimeout whether a
// frame has been handled that long. A store stalled that long closes the connection
// (1013, try again later), which cancels the connection's context and so the stalled
// call; the client reconnects, and resends what was not acknowledged, harmlessly.
func (c *Client) watchStore(now int64) {
	c.busySince.Store(now)
	if c.stallArmed.Load() {
		return
	}
	c.stallArmed.Store(true)
	if c.stall == nil {
		c.stall = time.AfterFunc(c.r.o.StoreTimeout, c.checkStall)
		return
	}
	c.stall.Reset(c.r.o.StoreTimeout)
}

// checkStall is the stall timer's: it closes the connection if the frame being
// handled started StoreTimeout ago or more, re-arms itself for the rest of that time
// if one started later, and stays unarmed between frames (watchStore arms it). The
// flag is cleared before the frame's start is read, and watchStore notes the start
// before reading the flag, so a frame cannot start unwatched.
func (c *Client) checkStall() {
	c.stallArmed.Store(false)
	since := c.busySince.Load()
	if since == 0 {
		return
	}
	left := c.r.o.StoreTimeout - time.Duration(chat.Mono()-since)
	if left > 0 {
		c.stallArmed.Store(true)
		c.stall.Reset(left)
		return
	}
	c.r.log.Warn("a store call took too long; closing the connection", "room", c.req.Room, "timeout", c.r.o.StoreTimeout)
	c.t.Close(wire.CloseTryAgainLater, "try again later")
}

// truncate shortens s to at most n bytes for echoing it in an error message.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}
