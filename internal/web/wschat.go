package web

import (
	"context"
	"errors"
	"time"

	"github.com/gobwas/ws"

	"parley/internal/chat"
	"parley/internal/wire"
)

// readLoop reads client messages until the connection ends.
func (c *wsConn) readLoop() {
	for {
		op, data, err := c.conn.readMessage()
		if err != nil {
			c.closeFor(err)
			return
		}
		if op != ws.OpText {
			c.reply(chat.Errorf(chat.EInvalidFrame, "Frames must be JSON text."), "")
			continue
		}
		c.handleFrame(data)
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

// handleFrame acts on one client frame. Every refusal goes to this client only.
func (c *wsConn) handleFrame(data []byte) {
	f, err := wire.DecodeClient(data)
	if err != nil {
		c.reply(err, "")
		return
	}
	if !c.limiter.Allow() {
		c.reply(chat.Errorf(chat.ERateLimited, "You are sending too fast; please slow down."), f.ID)
		return
	}
	c.watchStore()
	defer c.stall.Stop()
	switch f.Type {
	case wire.TypeSend:
		err = c.handleSend(c.ctx, f.ID, f.Text, chat.KindChat)
	case wire.TypeBye:
		err = c.handleSend(c.ctx, f.ID, chat.ByeText, chat.KindBye)
	case wire.TypeEnd:
		err = c.handleEnd(c.ctx)
	default:
		err = chat.Errorf(chat.EInvalidFrame, "Unknown frame type %q.", truncate(f.Type, 32))
	}
	if err != nil {
		c.reply(err, f.ID)
	}
}

// watchStore bounds the store calls of one frame by storeTimeout without a context
// and timer of their own per frame: one timer per connection is re-armed. A store
// stalled that long closes the connection (1013, try again later), which cancels the
// connection's context and so the stalled call; the client reconnects, and resends
// what was not acknowledged, harmlessly.
func (c *wsConn) watchStore() {
	if c.stall == nil {
		c.stall = time.AfterFunc(c.s.storeMax, c.storeStalled)
		return
	}
	c.stall.Reset(c.s.storeMax)
}

func (c *wsConn) storeStalled() {
	c.s.log.Warn("a store call took too long; closing the connection", "room", c.req.room, "timeout", c.s.storeMax)
	c.close(statusTryAgainLater, "try again later")
}

// handleSend stores a message, acknowledges it to the sender, delivers it to this
// replica's connections of the session and publishes it for the other replicas. A
// resend of a stored id gets the same ack and delivers nothing new.
func (c *wsConn) handleSend(ctx context.Context, id, text string, kind chat.Kind) error {
	if err := chat.ValidateClientID(id); err != nil {
		return err
	}
	if kind == chat.KindChat { // a bye's text is Parley's own
		if err := chat.ValidateText(text, c.s.cfg.MaxText); err != nil {
			return err
		}
	}
	peer, err := c.peerForSend(ctx)
	if err != nil {
		return err
	}
	stored, dup, err := c.s.messages.Append(ctx, chat.Message{SessionID: c.sess.ID, ClientID: id,
		From: c.req.email, To: peer, Room: c.sess.Room, Kind: kind, Text: text})
	if err != nil {
		return err
	}
	if dup && stored.From != c.req.email {
		return chat.Errorf(chat.EInvalidFrame, "This message id is already used in this chat; send it with a new id.")
	}
	if dup {
		c.send(wire.Ack(id, stored.Seq))
		return nil
	}
	c.s.metrics.Stored(1)
	frame := wire.Message(stored)
	// The ack and the message go to this replica's connections at once, the sender's
	// two in one write; the broker carries the message to the other replicas.
	c.queue.Hold()
	c.send(wire.Ack(id, stored.Seq))
	c.member.Deliver(stored.Seq, frame)
	c.queue.Release()
	c.publish(ctx, chat.Event{Type: chat.EventMessage, Session: c.sess.ID, Seq: stored.Seq, Frame: frame})
	return nil
}

// errChatEnded refuses a send to a chat that has ended.
var errChatEnded = chat.Errorf(chat.EChatEnded, "This chat has ended; no more messages can be sent.")

// sessionRecheck is how long a connection trusts its copy of the session row before a
// send reads it again: a net for an ended event lost with a broker outage (Redis
// down or the subscription cut when another replica ended the chat), which would
// otherwise let this connection store messages in an ended chat until it reconnects.
// One read per sending connection every few seconds costs next to nothing.
const sessionRecheck = 5 * time.Second

// peerForSend returns the other person, the message's To, or errChatEnded. The hub
// knows when the session ended (its ended event sets the flag before the ended frame
// goes out, on every replica), so the session row is read only while no participant
// has entered yet (once one has, the peer never changes) and every sessionRecheck. A
// message sent while an end on another replica is still on its way may be stored
// just after the end.
func (c *wsConn) peerForSend(ctx context.Context) (string, error) {
	if c.member.Ended() {
		return "", errChatEnded
	}
	if peer := c.sess.Peer(c.req.email); peer != "" && time.Since(c.readAt) < c.s.recheck {
		return peer, nil
	}
	sess, err := c.s.sessions.Session(ctx, c.sess.ID)
	if err != nil {
		return "", err
	}
	c.sess, c.readAt = sess, time.Now()
	if sess.Ended() {
		c.member.MarkEnded()
		return "", errChatEnded
	}
	return sess.Peer(c.req.email), nil
}

// handleEnd ends the chat. The one caller that wins the end tells everyone and asks
// for the transcript export; anyone else is just told that the chat has ended.
func (c *wsConn) handleEnd(ctx context.Context) error {
	won, err := c.s.sessions.End(ctx, c.sess.ID, c.req.email, chat.Now())
	if err != nil {
		return err
	}
	c.member.MarkEnded() // by this call or an earlier one
	if !won {
		sess, err := c.s.sessions.Session(ctx, c.sess.ID)
		if err != nil {
			return err
		}
		c.send(wire.Ended(sess.EndedBy))
		return nil
	}
	c.publish(ctx, chat.Event{Type: chat.EventEnded, Session: c.sess.ID, Frame: wire.Ended(c.req.email)})
	if c.s.queue == nil {
		return nil
	}
	if err := c.s.queue.EnqueueExport(ctx, c.sess.ID); err != nil {
		// The session is in StatusEnding, the durable record; the sweeper enqueues it again.
		c.s.log.Error("cannot enqueue the transcript export", "session", c.sess.ID, "err", err)
	}
	return nil
}

// truncate shortens s to at most n bytes for echoing it in an error message.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}

// send queues a frame for this connection only.
func (c *wsConn) send(frame []byte) { c.queue.Send(frame) }

// reply sends err to this client only, as an error frame.
func (c *wsConn) reply(err error, id string) {
	if chat.ErrorCode(err) == chat.EInternal || chat.ErrorCode(err) == chat.EUnavailable {
		c.s.log.Error("frame failed", "session", c.sess.ID, "code", chat.ErrorCode(err), "err", err)
	}
	c.countRefusal(err)
	c.send(wire.Error(err, id))
}

// countRefusal counts an error frame that refuses what the client asked (not a
// failure of the server or a backend).
func (c *wsConn) countRefusal(err error) {
	switch code := chat.ErrorCode(err); code {
	case chat.EInternal, chat.EUnavailable:
	default:
		c.s.metrics.Refused(code)
	}
}
