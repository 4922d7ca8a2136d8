package web

import (
	"context"
	"errors"
	"time"

	"github.com/gobwas/ws"

	"parley/internal/hub"
)

// signInCheckTimeout bounds keepAlive's check of the sign-in; a store slower than
// that keeps the chat open (authenticator.stillSignedIn).
const signInCheckTimeout = 2 * time.Second

// sendFailed closes a connection whose queue overflowed (hub.ErrSlow) or whose write
// failed. It runs on the delivering goroutine and does not wait.
func (c *wsConn) sendFailed(err error) {
	c.s.log.Info("dropping a connection that cannot keep up", "room", c.req.room, "email", c.req.email, "err", err)
	if errors.Is(err, hub.ErrSlow) {
		c.s.metrics.SendQueueDropped()
	}
	c.abort("too slow")
}

// keepAlive pings the client; a client that has sent nothing (no frame, not even a
// pong) for IdleTimeout is gone and its connection is closed. The timer re-arms
// itself, so no goroutine waits between pings, and reads need no deadline. It also
// checks that the person is still signed in: a sign-out (or "Sign out everywhere")
// on another replica closes the chat here within a ping interval and the sign-in
// cache's lifetime, "going away", and the page reconnects to find itself signed out.
func (c *wsConn) keepAlive() {
	silent := c.conn.silence()
	if silent >= c.s.cfg.IdleTimeout {
		c.abort("idle timeout")
		return
	}
	if c.ctx.Err() != nil {
		return // closing already
	}
	ctx, cancel := context.WithTimeout(c.ctx, signInCheckTimeout)
	signedIn := c.s.auth.stillSignedIn(ctx, c.req.login)
	cancel()
	if !signedIn {
		c.close(ws.StatusGoingAway, "signed out")
		return
	}
	if err := c.conn.writeControl(ws.OpPing, nil); err != nil {
		c.abort("idle timeout")
		return
	}
	if t := c.ping.Load(); t != nil {
		t.Reset(min(c.s.cfg.PingInterval, c.s.cfg.IdleTimeout-silent))
	}
}

// goAway closes the connection for a server shutdown, so the client reconnects to
// another replica.
func (c *wsConn) goAway() { c.close(ws.StatusGoingAway, "server shutting down") }

// close sends the close frame once with the given status and stops the connection's
// store calls. The read loop then waits for the client's answer; if none comes within
// closeGrace, the TCP connection is dropped, which also cuts short a blocked write.
func (c *wsConn) close(code ws.StatusCode, reason string) {
	c.closeOnce.Do(func() {
		c.queue.Close()
		time.AfterFunc(closeGrace, c.conn.drop)
		_ = c.conn.writeClose(code, reason)
		c.cancel()
	})
}

// abort closes a connection that does not keep up (or does not answer pings) with a
// close frame, but does not wait for it: if the close handshake has not finished
// within closeGrace, the TCP connection is dropped. Either way the client reconnects
// and replays what it missed. It runs on the delivering goroutine, so it writes the
// close frame on another: the writer may be stuck behind the slow client.
func (c *wsConn) abort(reason string) {
	c.closeOnce.Do(func() {
		c.queue.Close()
		time.AfterFunc(closeGrace, func() {
			c.cancel()
			c.conn.drop()
		})
		go func() { _ = c.conn.writeClose(ws.StatusPolicyViolation, reason) }()
	})
}

// finish closes the connection (if not yet) after its read loop ended and waits for
// its writer.
func (c *wsConn) finish() {
	if t := c.ping.Load(); t != nil {
		t.Stop()
	}
	c.close(ws.StatusNormalClosure, "")
	c.queue.Wait()
}

// hangUp closes the TCP connection once the client has answered the close frame (or
// had closeGrace to).
func (c *wsConn) hangUp() {
	c.conn.linger(closeGrace)
	c.conn.drop()
}
