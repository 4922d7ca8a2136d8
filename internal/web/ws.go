package web

import (
	"context"
	"net/http"
	"net/url"
	"path"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gobwas/ws"

	"parley/internal/chat"
	"parley/internal/hub"
	"parley/internal/metrics"
	"parley/internal/room"
)

// WebSocket limits that are not configuration.
const (
	writeTimeout = 10 * time.Second // a write slower than this means the client is gone
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
		login, _ := s.auth.loginKey(r) // present: currentEmail found the sign-in
		req.login = strings.Clone(login)
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
	login   string // the sign-in it was opened under (authenticator.loginKey)
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
// is the send queue's (started only while frames wait), pings come from a timer. It is
// the chat layer's room.Transport; everything the frames mean is room.Client's.
type wsConn struct {
	s      *Server
	conn   *frameConn
	req    wsRequest
	ctx    context.Context // cancelled when the connection ends
	cancel context.CancelFunc
	queue  hub.SendQueue // in the struct: one allocation, one object less per frame
	ping   atomic.Pointer[time.Timer]
	client *room.Client
	// release gives back the person's connection slot (limitConns) once the
	// connection has ended.
	release func()

	closeOnce sync.Once
}

var _ room.Transport = (*wsConn)(nil)

// serveWS enters the chat on the handler's goroutine, then hands the connection to a
// goroutine of its own and returns. The handler's goroutine has a stack grown deep by
// HTTP parsing and the store calls of entering, and holds net/http's per-request
// buffers and the request while it runs; returning frees them all, and the new
// goroutine starts with a small stack that only the read loop uses (idle memory per
// connection: docs/BENCHMARKS.md). release is called once the connection has ended.
func (s *Server) serveWS(conn *frameConn, req wsRequest, release func()) {
	ctx, cancel := context.WithCancel(context.Background())
	c := &wsConn{s: s, conn: conn, req: req, ctx: ctx, cancel: cancel, release: release}
	c.queue.Init(s.cfg.SendQueue, conn, c.sendFailed)
	if !s.track(c) {
		c.close(ws.StatusGoingAway, "server shutting down")
		c.hangUp()
		release()
		return
	}
	s.metrics.ConnOpened()
	client, err := s.rooms.Enter(ctx, c, room.Request{Email: req.email, Room: req.room,
		After: req.after, Session: req.session})
	if err != nil {
		c.end()
		return
	}
	c.client = client
	c.ping.Store(time.AfterFunc(s.cfg.PingInterval, c.keepAlive))
	go c.run()
}

// run is the connection's own goroutine: the read loop, then leaving the chat.
func (c *wsConn) run() {
	defer c.end()
	defer c.client.Leave()
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
