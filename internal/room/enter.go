package room

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"parley/internal/chat"
	"parley/internal/hub"
	"parley/internal/wire"
)

// Client is one connection's part in a chat: its person, session and role, its hub
// membership and its rate limit. HandleFrame is called by the connection's reader
// only, one frame at a time; Leave once, when the connection has ended.
type Client struct {
	r   *Rooms
	t   Transport
	req Request
	ctx context.Context // the connection's: cancelled when it closes

	sess   *chat.Session // as entered; re-read while it has no participant, and after Recheck
	readAt time.Time     // when sess was last read
	role   chat.Role
	member *hub.Member

	limiter        *rate.Limiter
	throttledSince time.Time    // when the client went over its rate without pause; zero when under
	wait           *time.Timer  // the reader's pause for the limiter, made on the first
	stall          *time.Timer  // watchStore's, made on the first frame
	stallArmed     atomic.Bool  // stall is set to fire
	busySince      atomic.Int64 // chat.Mono when the frame being handled started; 0 between frames

	connected    bool          // Presence counted this connection (Disconnected is owed)
	presenceDone chan struct{} // closed when announcePresence has finished

	// The v1.1 signals (signals.go).
	lastSeq     int64     // the highest seq known to exist in the chat
	typingAt    time.Time // when this connection's last typing went out
	typingFrame []byte    // encoded once per connection
	cursor      cursorWriter
}

// Session returns the session the client is in.
func (c *Client) Session() *chat.Session { return c.sess }

// Enter finds the person's session in the room, sends the welcome frame, joins the
// hub (which replays the stored messages after req.After through t.Write and then
// switches to live frames) and announces the person to the peer. ctx is the
// connection's and must be cancelled when it closes. A refusal is told to the client
// and closes the connection (4003 for a full room, 1013 when a backend is down).
func (r *Rooms) Enter(ctx context.Context, t Transport, req Request) (*Client, error) {
	c := &Client{r: r, t: t, req: req, ctx: ctx,
		limiter: rate.NewLimiter(rate.Limit(r.o.RatePerSec), r.o.RateBurst)}
	if err := c.enter(); err != nil {
		c.refuse(err)
		return nil, err
	}
	c.announce()
	return c, nil
}

func (c *Client) enter() error {
	base := entering(c.ctx)
	ctx, cancel := context.WithTimeout(base, c.r.o.StoreTimeout)
	defer cancel()
	sess, role, err := c.findSession(ctx)
	if err != nil {
		return err
	}
	c.sess, c.role, c.readAt = sess, role, time.Now()
	if c.req.Session != "" && c.req.Session != sess.ID {
		c.req.After = 0 // that after counted another session's messages
	}
	last, err := c.r.o.Messages.LastSeq(ctx, sess.ID)
	if err != nil {
		return err
	}
	c.lastSeq = last
	if err := c.t.Write(c.welcome(ctx, last)); err != nil {
		return fmt.Errorf("%w: %w", errClientGone, err)
	}
	c.member, err = c.r.o.Hub.Join(base, hub.Join{Session: sess.ID, Email: c.req.Email,
		Peer: sess.Peer(c.req.Email), After: min(c.req.After, last), To: c.t,
		Replay: c.replayWrite, Window: c.r.o.Window})
	return err
}

// entering is the context of entering's calls: the connection's, without its
// cancellation. Nothing cancels a connection's context before Enter returns (its
// reading starts after), so this changes no outcome; but every call made under the
// connection's own context (database/sql derives one per query) would register with
// it, leaving it a map of children to keep for as long as the connection lives: about
// a kilobyte of an idle connection's memory (docs/BENCHMARKS.md).
func entering(ctx context.Context) context.Context { return context.WithoutCancel(ctx) }

// welcome encodes the welcome frame: with every person's receipts (v1.1) when the
// chat layer keeps them. The cursors cost one read per connection; when it fails the
// welcome carries zeros, which clients only ever move forward from.
func (c *Client) welcome(ctx context.Context, last int64) []byte {
	if c.r.o.Receipts == nil {
		return wire.Welcome(c.sess, c.role, c.req.Email, last)
	}
	cursors, err := c.r.o.Receipts.Cursors(ctx, c.sess.ID)
	if err != nil {
		c.r.log.Warn("cannot read receipts", "session", c.sess.ID, "code", chat.ErrorCode(err), "err", err)
	}
	c.cursor = cursorWriter{r: c.r, session: c.sess.ID, email: c.req.Email}
	c.cursor.stored = cursors[c.req.Email]
	c.cursor.want = c.cursor.stored
	return wire.WelcomeReceipts(c.sess, c.role, c.req.Email, last, cursors)
}

// errNoChat refuses a connection to a room where the person has no chat at all.
var errNoChat = chat.Errorf(chat.ENoChat, "You have no chat in this room yet; join the room to start one.")

// findSession reattaches to the session named in the request when the person is in
// it (even if it has ended, so a reconnect after the end shows the ended chat).
// Otherwise it finds the room's chat without starting one: the chat in progress
// (entering it, as participant if the seat is free), or else the person's latest chat
// in the room, ended; with neither, errNoChat. Starting a chat is POST /join's.
func (c *Client) findSession(ctx context.Context) (*chat.Session, chat.Role, error) {
	if c.req.Session != "" {
		sess, err := c.r.o.Sessions.Session(ctx, c.req.Session)
		if err == nil && sess.Room == c.req.Room && sess.RoleOf(c.req.Email) != chat.RoleNone {
			return sess, sess.RoleOf(c.req.Email), nil
		}
		if err != nil && !chat.IsCode(err, chat.ENotFound) {
			return nil, chat.RoleNone, err
		}
	}
	sess, err := c.r.o.Sessions.InProgress(ctx, c.req.Room)
	switch {
	case err == nil && sess.RoleOf(c.req.Email) != chat.RoleNone:
		return sess, sess.RoleOf(c.req.Email), nil
	case err == nil: // someone else's chat: take its free seat, or room_full
		return c.r.o.Sessions.Enter(ctx, c.req.Room, c.req.Email, chat.Now())
	case !chat.IsCode(err, chat.ENotFound):
		return nil, chat.RoleNone, err
	}
	sess, err = c.r.o.Sessions.LatestSession(ctx, c.req.Room, c.req.Email)
	switch {
	case err == nil:
		return sess, sess.RoleOf(c.req.Email), nil
	case chat.IsCode(err, chat.ENotFound):
		return nil, chat.RoleNone, errNoChat
	}
	return nil, chat.RoleNone, err
}

// errClientGone marks a failed write while entering: the client left, nothing to log.
var errClientGone = errors.New("the client went away")

// replayWrite writes one replayed frame.
func (c *Client) replayWrite(frame []byte) error {
	if err := c.t.Write(frame); err != nil {
		return fmt.Errorf("%w: %w", errClientGone, err)
	}
	return nil
}

// refuse tells the client why it cannot chat and closes the connection: 4003 for a
// full room, 1013 (try again later) when a backend is down, 1011 otherwise.
func (c *Client) refuse(err error) {
	switch {
	case errors.Is(err, hub.ErrSlow): // fell too far behind during its replay
		c.r.o.Metrics.SendQueueDropped()
		c.t.Close(wire.ClosePolicy, "too slow")
		return
	case errors.Is(err, errClientGone), errors.Is(err, context.Canceled) && c.ctx.Err() != nil:
		c.t.Close(wire.CloseGoingAway, "")
		return
	}
	c.logFailure("cannot enter a chat", err)
	c.countRefusal(err)
	_ = c.t.Write(wire.Error(err, ""))
	switch chat.ErrorCode(err) {
	case chat.ERoomFull:
		c.t.Close(wire.CloseRoomFull, "room full")
	case chat.ENoChat:
		c.t.Close(wire.CloseNormal, "no chat")
	case chat.EUnavailable:
		c.t.Close(wire.CloseTryAgainLater, "try again later")
	default:
		c.t.Close(wire.CloseInternal, "internal error")
	}
}

// logFailure logs err when it is the server's or a backend's, never the client's.
func (c *Client) logFailure(msg string, err error) {
	switch chat.ErrorCode(err) {
	case chat.EInternal, chat.EUnavailable, chat.EPermanent:
		c.r.log.Error(msg, "room", c.req.Room, "code", chat.ErrorCode(err), "err", err)
	}
}

// countRefusal counts an error frame that refuses what the client asked (not a
// failure of the server or a backend).
func (c *Client) countRefusal(err error) {
	switch code := chat.ErrorCode(err); code {
	case chat.EInternal, chat.EUnavailable:
	default:
		c.r.o.Metrics.Refused(code)
	}
}
