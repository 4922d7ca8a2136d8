package room

import (
	"context"
	"time"

	"parley/internal/chat"
	"parley/internal/hub"
	"parley/internal/wire"
)

// Degraded names, in a presence frame's "degraded", what this replica cannot do.
const degradedPresence = "presence" // the presence backend did not answer: "online" is a guess

// announce tells the client whether the peer is online, tells the peer that this
// person is (if this is their first connection), and repeats the end of the chat to a
// client that attached to an ended session. Presence calls are bounded by
// hub.PresenceTimeout: a presence backend that hangs costs a guessed dot, not the chat.
func (c *Client) announce() {
	ctx, cancel := context.WithTimeout(entering(c.ctx), c.r.o.StoreTimeout)
	// Read the session again: a participant who entered after this connection's Enter
	// but announced before it joined the hub would otherwise go unmentioned.
	if fresh, err := c.r.o.Sessions.Session(ctx, c.sess.ID); err == nil {
		c.sess, c.readAt = fresh, time.Now()
	}
	cancel()
	if c.r.o.Presence != nil {
		c.presenceDone = make(chan struct{})
		go c.announcePresence(c.sess) // entering never waits for presence
	}
	if c.sess.Ended() {
		c.member.MarkEnded()
		c.t.Send(wire.Ended(c.sess.EndedBy))
		if c.sess.Status == chat.StatusCompleted && c.sess.ChatHistory != "" {
			c.t.Send(wire.Transcript(c.sess.ChatHistory))
		}
	}
}

// announcePresence runs on a goroutine of its own once the client has entered: a
// presence backend that hangs (Redis stopped) delays the "online" dots only. Each
// call is given up after hub.PresenceTimeout even if the backend's client does not
// give up itself.
func (c *Client) announcePresence(sess *chat.Session) {
	defer close(c.presenceDone)
	if peer := sess.Peer(c.req.Email); peer != "" {
		// The peer may come online (or go) while this read is under way, and their
		// event reach this connection before the answer: the hub drops the answer
		// then, so the newer event stays the last word.
		mark := c.member.PresenceMark(peer)
		online, err := c.bounded(func(ctx context.Context) (bool, error) {
			return c.r.o.Presence.Online(ctx, sess.ID, peer)
		})
		if err != nil {
			c.r.log.Warn("presence is degraded: cannot read it", "session", c.sess.ID, "err", err)
			c.member.TellPresence(peer, mark, false, wire.PresenceDegraded(peer, false, degradedPresence))
		} else {
			c.member.TellPresence(peer, mark, online, wire.Presence(peer, online))
		}
	}
	first, err := c.bounded(func(ctx context.Context) (bool, error) {
		return c.r.o.Presence.Connected(ctx, sess.ID, c.req.Email)
	})
	if err != nil {
		c.r.log.Warn("presence is degraded: cannot record a connection", "session", c.sess.ID, "err", err)
		first = true // tell the peer anyway: the connection is real
	} else {
		c.connected = true
	}
	if first {
		c.tellPeer(sess.ID, true)
	}
}

// bounded runs a presence call, giving up after hub.PresenceTimeout.
func (c *Client) bounded(call func(context.Context) (bool, error)) (bool, error) {
	ctx, cancel := context.WithTimeout(context.Background(), hub.PresenceTimeout)
	defer cancel() // after the select: cancelling in the goroutine would race its result
	type result struct {
		v   bool
		err error
	}
	ch := make(chan result, 1)
	go func() {
		v, err := call(ctx)
		ch <- result{v, err}
	}()
	select {
	case r := <-ch:
		return r.v, r.err
	case <-ctx.Done():
		return false, ctx.Err()
	}
}

// tellPeer tells everyone in the chat, here at once and elsewhere through the
// broker, that this person came online or went offline.
func (c *Client) tellPeer(session string, online bool) {
	ev := chat.Event{Type: chat.EventPresence, Session: session, Email: c.req.Email,
		Online: online, Frame: wire.Presence(c.req.Email, online)}
	c.member.Announce(ev)
	c.r.o.Hub.Publish(ev)
}

// Leave takes the closed connection out of the chat: out of Presence, telling the
// peer if it was the person's last connection, and out of the hub.
func (c *Client) Leave() {
	if c.stall != nil {
		c.stall.Stop()
	}
	if c.wait != nil {
		c.wait.Stop()
	}
	defer c.member.Leave()
	if c.r.o.Receipts != nil {
		c.cursor.close() // what the client read last is written now, not lost
	}
	if c.r.o.Presence == nil {
		return
	}
	<-c.presenceDone // Connected first, then Disconnected
	last := true
	if c.connected {
		var err error
		last, err = c.bounded(func(ctx context.Context) (bool, error) {
			return c.r.o.Presence.Disconnected(ctx, c.sess.ID, c.req.Email)
		})
		if err != nil {
			c.r.log.Warn("presence is degraded: cannot record a disconnection", "session", c.sess.ID, "err", err)
			return // the claim expires on its own, and the peer's watch notices
		}
	}
	if last {
		c.tellPeer(c.sess.ID, false)
	}
}
