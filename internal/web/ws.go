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
	req := wsRequest{email: strings.Clone(email), room: strings.Clone(r.PathValue("room")),
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

// hangUp closes the TCP connection once the client has answered the close frame (or
// had closeGrace to).
func (c *wsConn) hangUp() {
	c.conn.linger(closeGrace)
	c.conn.drop()
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
	if err := c.write(encodeWelcome(sess, role, c.req.email, last)); err != nil {
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
	_ = c.write(encodeError(err, ""))
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
		c.queue.Send(encodePresence(peer, online))
	}
	first, err := c.s.presence.Connected(ctx, c.sess.ID, c.req.email)
	if err != nil {
		c.s.log.Warn("cannot record presence", "session", c.sess.ID, "err", err)
	}
	if first {
		c.publish(ctx, chat.Event{Type: chat.EventPresence, Session: c.sess.ID, Email: c.req.email,
			Online: true, Frame: encodePresence(c.req.email, true)})
	}
	if c.sess.Ended() {
		c.member.MarkEnded()
		c.queue.Send(encodeEnded(c.sess.EndedBy))
		if c.sess.Status == chat.StatusCompleted && c.sess.ChatHistory != "" {
			c.queue.Send(encodeTranscript(c.sess.ChatHistory))
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
			Online: false, Frame: encodePresence(c.req.email, false)})
	}
}

// publish sends ev to every connection of the session; a failure is logged, since the
// stored messages are the truth and connections catch up from them.
func (c *wsConn) publish(ctx context.Context, ev chat.Event) {
	if err := c.s.broker.Publish(ctx, ev); err != nil {
		c.s.log.Warn("cannot publish an event", "session", ev.Session, "type", int(ev.Type), "err", err)
	}
}

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

// send queues a frame for this connection only.
func (c *wsConn) send(frame []byte) { c.queue.Send(frame) }

// reply sends err to this client only, as an error frame.
func (c *wsConn) reply(err error, id string) {
	if chat.ErrorCode(err) == chat.EInternal || chat.ErrorCode(err) == chat.EUnavailable {
		c.s.log.Error("frame failed", "session", c.sess.ID, "code", chat.ErrorCode(err), "err", err)
	}
	c.countRefusal(err)
	c.send(encodeError(err, id))
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
// itself, so no goroutine waits between pings, and reads need no deadline.
func (c *wsConn) keepAlive() {
	silent := time.Since(c.conn.heardAt())
	if silent >= c.s.cfg.IdleTimeout {
		c.abort("idle timeout")
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

// handleFrame acts on one client frame. Every refusal goes to this client only.
func (c *wsConn) handleFrame(data []byte) {
	f, err := decodeClientFrame(data)
	if err != nil {
		c.reply(err, "")
		return
	}
	if !c.limiter.Allow() {
		c.reply(chat.Errorf(chat.ERateLimited, "You are sending too fast; please slow down."), f.ID)
		return
	}
	ctx := c.ctx
	c.watchStore()
	defer c.stall.Stop()
	switch f.Type {
	case frameSend:
		err = c.handleSend(ctx, f.ID, f.Text, chat.KindChat)
	case frameBye:
		err = c.handleSend(ctx, f.ID, chat.ByeText, chat.KindBye)
	case frameEnd:
		err = c.handleEnd(ctx)
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
		c.stall = time.AfterFunc(storeTimeout, c.storeStalled)
		return
	}
	c.stall.Reset(storeTimeout)
}

func (c *wsConn) storeStalled() {
	c.s.log.Warn("a store call took too long; closing the connection", "session", c.sess.ID, "timeout", storeTimeout)
	c.close(statusTryAgainLater, "try again later")
}

// handleSend stores a message, acknowledges it to the sender and publishes it to the
// session. A resend of a stored id gets the same ack and publishes nothing new.
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
		c.send(encodeAck(id, stored.Seq))
		return nil
	}
	c.s.metrics.Stored(1)
	frame := encodeMessage(stored)
	// The ack and the message go to this replica's connections at once, the sender's
	// two in one write; the broker carries the message to the other replicas.
	c.queue.Hold()
	c.send(encodeAck(id, stored.Seq))
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
		c.send(encodeEnded(sess.EndedBy))
		return nil
	}
	c.publish(ctx, chat.Event{Type: chat.EventEnded, Session: c.sess.ID, Frame: encodeEnded(c.req.email)})
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
