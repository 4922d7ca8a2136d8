package web

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"path"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gobwas/ws"
	"golang.org/x/time/rate"

	"parley/internal/chat"
	"parley/internal/hub"
	"parley/internal/metrics"
	"parley/internal/wire"
)

// WebSocket limits that are not configuration.
const (
	writeTimeout = 10 * time.Second // a write slower than this means the client is gone
	storeTimeout = 10 * time.Second // the store calls on behalf of one frame
	closeGrace   = time.Second      // how long a closed client gets to complete the close handshake
)

// handleWS serves GET /rooms/{room}/ws[?after=SEQ][&session=ID]: the live chat of the
// room. Identity comes from the cookie only and the Origin must be this site, so
// another site cannot open a chat in the person's name.
func (s *Server) handleWS() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		email, ok := s.currentEmail(r)
		if !ok {
			s.metrics.Refused(metrics.ReasonUnauthorized)
			http.Error(w, "Please join the room first.", http.StatusUnauthorized)
			return
		}
		if !s.originAllowed(r) {
			s.metrics.Refused(metrics.ReasonBadOrigin)
			http.Error(w, "This page may not be opened from another site.", http.StatusForbidden)
			return
		}
		req, err := parseWSRequest(r, email)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		release := takeConnSlot(r)
		conn, err := upgrade(w, r, s.cfg.ReadLimit)
		if err != nil {
			release()
			return // upgrade has answered the request
		}
		s.serveWS(conn, req, release)
	})
}

// wsRequest is what a WebSocket request asks for.
type wsRequest struct {
	email   string
	room    string
	after   int64
	session string // the session to reattach to, if any
}

func parseWSRequest(r *http.Request, email string) (wsRequest, error) {
	// Cloned: the connection outlives the request, and a substring would keep the
	// request's URL or headers alive for as long as the chat is open.
	// Room names are case-insensitive, stored lower-case (chat.NormalizeRoom).
	req := wsRequest{email: strings.Clone(email), room: strings.Clone(strings.ToLower(r.PathValue("room"))),
		session: strings.Clone(r.URL.Query().Get("session"))}
	if err := chat.ValidateRoom(req.room); err != nil {
		return req, err
	}
	if a := r.URL.Query().Get("after"); a != "" {
		n, err := strconv.ParseInt(a, 10, 64)
		if err != nil || n < 0 {
			return req, chat.Errorf(chat.EInvalid, "after must be a message number (0 or more).")
		}
		req.after = n
	}
	if len(req.session) > 64 {
		return req, chat.Errorf(chat.EInvalid, "That is not a chat session id.")
	}
	return req, nil
}

// originAllowed reports whether the request's Origin is this site (PublicURL) or one
// of the AllowedOrigins. Requests without an Origin do not come from a browser page
// and are let through; the cookie still has to be valid.
func (s *Server) originAllowed(r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" {
		return false
	}
	if strings.EqualFold(u.Scheme, s.public.Scheme) && strings.EqualFold(u.Host, s.public.Host) {
		return true
	}
	for _, pattern := range s.cfg.AllowedOrigins {
		target := u.Host
		if strings.Contains(pattern, "://") {
			target = u.Scheme + "://" + u.Host
		}
		if ok, _ := path.Match(strings.ToLower(pattern), strings.ToLower(target)); ok {
			return true
		}
	}
	return false
}

// wsConn is one open WebSocket: the reader runs on a goroutine of its own, the writer
// is the send queue's (started only while frames wait), pings come from a timer.
type wsConn struct {
	s       *Server
	conn    *frameConn
	req     wsRequest
	ctx     context.Context // cancelled when the connection ends
	cancel  context.CancelFunc
	queue   *hub.SendQueue
	limiter *rate.Limiter
	ping    atomic.Pointer[time.Timer]
	stall   *time.Timer // watchStore's; made on the first frame, used by the reader only

	sess   *chat.Session // as entered; re-read while it has no participant, and after sessionRecheck
	readAt time.Time     // when sess was last read
	role   chat.Role
	member *hub.Member
	// release gives back the person's connection slot (limitConns) once the
	// connection has ended.
	release func()

	closeOnce sync.Once
}

// serveWS enters the chat on the handler's goroutine, then hands the connection to a
// goroutine of its own and returns. The handler's goroutine has a stack grown deep by
// HTTP parsing and the store calls of entering, and holds net/http's per-request
// buffers and the request while it runs; returning frees them all, and the new
// goroutine starts with a small stack that only the read loop uses (idle memory per
// connection: docs/BENCHMARKS.md). release is called once the connection has ended.
func (s *Server) serveWS(conn *frameConn, req wsRequest, release func()) {
	ctx, cancel := context.WithCancel(context.Background())
	c := &wsConn{s: s, conn: conn, req: req, ctx: ctx, cancel: cancel, release: release,
		limiter: rate.NewLimiter(rate.Limit(s.cfg.RatePerSec), s.cfg.RateBurst)}
	c.queue = hub.NewSendQueue(s.cfg.SendQueue, conn, c.sendFailed)
	if !s.track(c) {
		c.close(ws.StatusGoingAway, "server shutting down")
		c.hangUp()
		release()
		return
	}
	s.metrics.ConnOpened()
	member, err := c.enter()
	if err != nil {
		c.end()
		return
	}
	c.member = member
	c.announce()
	s.watch.joined(c.sess.ID, c.req.email, c.sess.Peer(c.req.email))
	c.ping.Store(time.AfterFunc(s.cfg.PingInterval, c.keepAlive))
	go c.run()
}

// run is the connection's own goroutine: the read loop, then leaving the chat.
func (c *wsConn) run() {
	defer c.end()
	defer c.member.Leave()
	defer c.goOffline()
	defer c.s.watch.left(c.sess.ID, c.req.email)
	c.readLoop()
}

// end releases the connection after its read loop ended or its entering failed.
func (c *wsConn) end() {
	c.finish()
	c.hangUp()
	c.s.untrack(c)
	c.release()
}

// track registers c for Shutdown; false once shutting down.
func (s *Server) track(c *wsConn) bool {
	s.connMu.Lock()
	defer s.connMu.Unlock()
	if s.closing {
		return false
	}
	s.conns[c] = struct{}{}
	s.connWG.Add(1)
	return true
}

func (s *Server) untrack(c *wsConn) {
	s.connMu.Lock()
	delete(s.conns, c)
	s.connMu.Unlock()
	s.metrics.ConnClosed()
	s.connWG.Done()
}

// enter finds the session, sends the welcome frame, and joins the hub, which replays
// the stored messages after req.after and then switches to live frames.
func (c *wsConn) enter() (*hub.Member, error) {
	ctx, cancel := context.WithTimeout(c.ctx, storeTimeout)
	defer cancel()
	sess, role, err := c.findSession(ctx)
	if err != nil {
		c.refuse(err)
		return nil, err
	}
	c.sess, c.role = sess, role
	if c.req.session != "" && c.req.session != sess.ID {
		c.req.after = 0 // that after counted another session's messages
	}
	last, err := c.s.messages.LastSeq(ctx, sess.ID)
	if err != nil {
		c.refuse(err)
		return nil, err
	}
	if err := c.write(wire.Welcome(sess, role, c.req.email, last)); err != nil {
		return nil, err
	}
	member, err := c.s.hub.Join(c.ctx, hub.Join{Session: sess.ID, Email: c.req.email,
		After: min(c.req.after, last), To: c.queue, Replay: c.replayWrite, Window: max(1, c.s.cfg.SendQueue/2)})
	if err != nil {
		c.refuse(err)
		return nil, err
	}
	return member, nil
}

// findSession reattaches to the session named in the request when the person is in
// it (even if it has ended, so a reconnect after the end shows the ended chat), and
// otherwise enters the room's chat in progress.
func (c *wsConn) findSession(ctx context.Context) (*chat.Session, chat.Role, error) {
	if c.req.session != "" {
		sess, err := c.s.sessions.Session(ctx, c.req.session)
		if err == nil && sess.Room == c.req.room && sess.RoleOf(c.req.email) != chat.RoleNone {
			return sess, sess.RoleOf(c.req.email), nil
		}
		if err != nil && !chat.IsCode(err, chat.ENotFound) {
			return nil, chat.RoleNone, err
		}
	}
	return c.s.sessions.Enter(ctx, c.req.room, c.req.email, chat.Now())
}

// refuse tells the client why it cannot chat and closes the connection: 4003 for a
// full room, 1013 (try again later) when a backend is down, 1011 otherwise.
func (c *wsConn) refuse(err error) {
	switch {
	case errors.Is(err, hub.ErrSlow): // fell too far behind during its replay
		c.s.metrics.SendQueueDropped()
		c.abort("too slow")
		return
	case errors.Is(err, errClientGone):
		c.close(ws.StatusGoingAway, "")
		return
	}
	c.s.logError(nil, err)
	c.countRefusal(err)
	_ = c.write(wire.Error(err, ""))
	switch chat.ErrorCode(err) {
	case chat.ERoomFull:
		c.close(StatusRoomFull, "room full")
	case chat.EUnavailable:
		c.close(statusTryAgainLater, "try again later")
	default:
		c.close(ws.StatusInternalServerError, "internal error")
	}
}

// announce tells the client whether the peer is online, tells the peer that this
// person is (if this is their first connection), and repeats the end of the chat to a
// client that attached to an ended session.
func (c *wsConn) announce() {
	ctx, cancel := context.WithTimeout(c.ctx, storeTimeout)
	defer cancel()
	// Read the session again: a participant who entered after this connection's Enter
	// but announced before it joined the hub would otherwise go unmentioned.
	if fresh, err := c.s.sessions.Session(ctx, c.sess.ID); err == nil {
		c.sess, c.readAt = fresh, time.Now()
	}
	if peer := c.sess.Peer(c.req.email); peer != "" {
		online, err := c.s.presence.Online(ctx, c.sess.ID, peer)
		if err != nil {
			c.s.log.Warn("cannot read presence", "session", c.sess.ID, "err", err)
		}
		c.queue.Send(wire.Presence(peer, online))
	}
	first, err := c.s.presence.Connected(ctx, c.sess.ID, c.req.email)
	if err != nil {
		c.s.log.Warn("cannot record presence", "session", c.sess.ID, "err", err)
	}
	if first {
		c.publish(ctx, chat.Event{Type: chat.EventPresence, Session: c.sess.ID, Email: c.req.email,
			Online: true, Frame: wire.Presence(c.req.email, true)})
	}
	if c.sess.Ended() {
		c.member.MarkEnded()
		c.queue.Send(wire.Ended(c.sess.EndedBy))
		if c.sess.Status == chat.StatusCompleted && c.sess.ChatHistory != "" {
			c.queue.Send(wire.Transcript(c.sess.ChatHistory))
		}
	}
}

// goOffline records the closed connection and tells the peer if it was the last.
func (c *wsConn) goOffline() {
	ctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
	defer cancel()
	last, err := c.s.presence.Disconnected(ctx, c.sess.ID, c.req.email)
	if err != nil {
		c.s.log.Warn("cannot record presence", "session", c.sess.ID, "err", err)
	}
	if last {
		c.publish(ctx, chat.Event{Type: chat.EventPresence, Session: c.sess.ID, Email: c.req.email,
			Online: false, Frame: wire.Presence(c.req.email, false)})
	}
}

// publish sends ev to every connection of the session; a failure is logged, since the
// stored messages are the truth and connections catch up from them.
func (c *wsConn) publish(ctx context.Context, ev chat.Event) {
	if err := c.s.broker.Publish(ctx, ev); err != nil {
		c.s.log.Warn("cannot publish an event", "session", ev.Session, "type", int(ev.Type), "err", err)
	}
}

// write sends one frame now, outside the send queue: the welcome, the replay, a refusal.
func (c *wsConn) write(frame []byte) error { return c.conn.writeText(frame) }

// errClientGone marks a failed write during the replay: the client left, nothing to log.
var errClientGone = errors.New("the client went away")

// replayWrite writes one replayed frame.
func (c *wsConn) replayWrite(frame []byte) error {
	if err := c.write(frame); err != nil {
		return fmt.Errorf("%w: %w", errClientGone, err)
	}
	return nil
}
