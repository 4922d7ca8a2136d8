package room

import (
	"context"
	"time"

	"parley/internal/chat"
	"parley/internal/wire"
)

func (c *Client) handleSend(f wire.ClientFrame) error { return c.store(f.ID, f.Text, chat.KindChat) }

func (c *Client) handleBye(f wire.ClientFrame) error {
	return c.store(f.ID, chat.ByeText, chat.KindBye)
}

// store stores a message, acknowledges it to the sender, delivers it to this
// replica's connections of the session and queues it for the other replicas: the ack
// waits for the store only. A resend of a stored id gets the same ack, and its
// message reaches only the connections that do not have it yet.
func (c *Client) store(id, text string, kind chat.Kind) error {
	if err := chat.ValidateClientID(id); err != nil {
		return err
	}
	if kind == chat.KindChat { // a bye's text is Parley's own
		if err := chat.ValidateText(text, c.r.o.MaxText); err != nil {
			return err
		}
	}
	peer, err := c.peerForSend(c.ctx)
	if err != nil {
		return err
	}
	stored, dup, err := c.r.o.Messages.Append(c.ctx, chat.Message{SessionID: c.sess.ID, ClientID: id,
		From: c.req.Email, To: peer, Room: c.sess.Room, Kind: kind, Text: text})
	if err != nil {
		if chat.IsCode(err, chat.EChatEnded) {
			c.member.MarkEnded() // the store knew first: later sends are refused without it
		}
		return err
	}
	if dup && stored.From != c.req.Email {
		return chat.Errorf(chat.EInvalidFrame, "This message id is already used in this chat; send it with a new id.")
	}
	if !dup {
		c.r.o.Metrics.Stored(1)
	}
	// A resend (dup) is delivered and published again too: its first attempt may have
	// been stored and then failed before it was delivered (a store's answer lost on the
	// way, a connection closed after StoreTimeout), and nothing else would tell this
	// replica's connections or the others until a later message showed the gap. The
	// hubs drop it by seq wherever it was delivered already.
	frame := wire.Message(stored)
	// The ack and the message go to this replica's connections at once, the sender's
	// two in one write; then the publish queue carries the message to the other replicas.
	c.t.Hold()
	c.t.Reply(wire.Ack(id, stored.Seq))
	c.member.Deliver(stored.Seq, frame)
	c.t.Release()
	c.r.o.Hub.Publish(chat.Event{Type: chat.EventMessage, Session: c.sess.ID, Seq: stored.Seq, Frame: frame})
	return nil
}

// errChatEnded refuses a send to a chat that has ended.
var errChatEnded = chat.Errorf(chat.EChatEnded, "This chat has ended; no more messages can be sent.")

// peerForSend returns the other person, the message's To, or errChatEnded. The hub
// knows when the session ended (its ended event sets the flag before the ended frame
// goes out, on every replica), so the session row is read only while no participant
// has entered yet (once one has, the peer never changes) and, where an ended event
// lost with a broker outage would let messages in after the end, every Recheck: not
// with the in-process bus (it loses none, and a chat ends only through a connection of
// this process), nor with a message store that refuses them itself (chat.EndChecked:
// SQLite, MariaDB). Otherwise (DynamoDB messages across replicas) a message sent while
// an end on another replica is still on its way may be stored just after the end.
func (c *Client) peerForSend(ctx context.Context) (string, error) {
	if c.member.Ended() {
		return "", errChatEnded
	}
	if peer := c.sess.Peer(c.req.Email); peer != "" && (c.r.trustRow || time.Since(c.readAt) < c.r.o.Recheck) {
		return peer, nil
	}
	sess, err := c.r.o.Sessions.Session(ctx, c.sess.ID)
	if err != nil {
		return "", err
	}
	c.sess, c.readAt = sess, time.Now()
	if sess.Ended() {
		c.member.MarkEnded()
		return "", errChatEnded
	}
	return sess.Peer(c.req.Email), nil
}

// handleEnd ends the chat. The one caller that wins the end tells everyone and asks
// for the transcript export; anyone else is just told that the chat has ended.
func (c *Client) handleEnd(wire.ClientFrame) error {
	won, err := c.r.o.Sessions.End(c.ctx, c.sess.ID, c.req.Email, chat.Now())
	if err != nil {
		return err
	}
	c.member.MarkEnded() // by this call or an earlier one
	if !won {
		sess, err := c.r.o.Sessions.Session(c.ctx, c.sess.ID)
		if err != nil {
			return err
		}
		c.t.Reply(wire.Ended(sess.EndedBy))
		return nil
	}
	frame := wire.Ended(c.req.Email)
	// This replica's connections hear it at once; the broker tells the others.
	ev := chat.Event{Type: chat.EventEnded, Session: c.sess.ID, Frame: frame}
	c.member.Announce(ev)
	c.r.o.Hub.Publish(ev)
	if c.r.o.Queue == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(c.ctx, endTimeout)
	defer cancel()
	if err := c.r.o.Queue.EnqueueExport(ctx, c.sess.ID); err != nil {
		// The session is in StatusEnding, the durable record; the sweeper enqueues it again.
		c.r.log.Error("cannot enqueue the transcript export", "session", c.sess.ID, "err", err)
	}
	return nil
}
