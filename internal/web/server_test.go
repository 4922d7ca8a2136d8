package web

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"parley/internal/chat"
	"parley/internal/membus"
	"parley/internal/sqlstore"
	"parley/internal/wire"
)

// recordingQueue is a chat.Queue that remembers what was enqueued.
type recordingQueue struct {
	mu  sync.Mutex
	ids []string
}

func (q *recordingQueue) EnqueueExport(ctx context.Context, id string) error {
	q.mu.Lock()
	q.ids = append(q.ids, id)
	q.mu.Unlock()
	return nil
}
func (q *recordingQueue) Close() error { return nil }
func (q *recordingQueue) enqueued() []string {
	q.mu.Lock()
	defer q.mu.Unlock()
	return append([]string(nil), q.ids...)
}

// wsEnv is a real Parley server (SQLite file, in-process bus) behind httptest.
type wsEnv struct {
	t      *testing.T
	dbPath string
	cfg    Config
	store  *sqlstore.DB
	queue  *recordingQueue
	srv    *Server
	ts     *httptest.Server
}

func newWSEnv(t *testing.T, cfg Config) *wsEnv {
	t.Helper()
	e := &wsEnv{t: t, dbPath: filepath.Join(t.TempDir(), "parley.db"), cfg: cfg, queue: &recordingQueue{}}
	e.ts = httptest.NewUnstartedServer(nil)
	e.cfg.PublicURL = "http://" + e.ts.Listener.Addr().String()
	if e.cfg.CookieKey == nil {
		e.cfg.CookieKey = []byte("test cookie key, 32 bytes long!!")
	}
	e.start()
	e.ts.Start()
	t.Cleanup(func() {
		e.ts.CloseClientConnections()
		e.stop()
		e.ts.Close()
	})
	return e
}

// start opens the store and builds a server on it.
func (e *wsEnv) start() {
	store, err := sqlstore.OpenSQLite(context.Background(), e.dbPath, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	bus := membus.New()
	e.store = store
	e.srv = NewServer(Deps{Config: e.cfg, Sessions: store, Messages: store, Broker: bus,
		Presence: membus.NewPresence(), Queue: e.queue, Logger: testLogger(e.t), Logins: store})
	e.ts.Config.Handler = e.srv
}

// stop shuts the server down and closes the store, as a process exit would.
func (e *wsEnv) stop() {
	if e.srv == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := e.srv.Shutdown(ctx); err != nil {
		e.t.Errorf("Shutdown: %v", err)
	}
	_ = e.srv.broker.Close()
	_ = e.store.Close()
	e.srv = nil
}

// cookie signs email in as an emailed link does and returns the Cookie header value.
func (e *wsEnv) cookie(email string) string {
	c := issueCookie(e.t, e.srv.auth, identity{Email: email, IssuedAt: time.Now(), Verified: true})
	return c.Name + "=" + c.Value
}

func (e *wsEnv) wsURL(room, query string) string {
	u := "ws" + strings.TrimPrefix(e.ts.URL, "http") + "/rooms/" + room + "/ws"
	if query != "" {
		u += "?" + query
	}
	return u
}

// dialRaw dials with the given headers and returns the connection or the response.
func (e *wsEnv) dialRaw(room, query string, h http.Header) (*websocket.Conn, *http.Response, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return websocket.Dial(ctx, e.wsURL(room, query), &websocket.DialOptions{HTTPHeader: h})
}

// join does what POST /join does before the room page connects: it enters the
// room's chat, or starts one (a full room is left for the connection to find).
func (e *wsEnv) join(room, email string) {
	e.t.Helper()
	if _, _, err := e.store.Enter(context.Background(), room, email, chat.Now()); err != nil && !chat.IsCode(err, chat.ERoomFull) {
		e.t.Fatalf("%s joining %s: %v", email, room, err)
	}
}

// dial joins email to room and connects as a browser on this site would.
func (e *wsEnv) dial(room, email, query string) *wsClient {
	e.t.Helper()
	e.join(room, email)
	return e.visit(room, email, query)
}

// visit connects email to room without joining: a reload or a bookmark.
func (e *wsEnv) visit(room, email, query string) *wsClient {
	e.t.Helper()
	h := http.Header{"Cookie": {e.cookie(email)}, "Origin": {e.cfg.PublicURL}}
	ws, _, err := e.dialRaw(room, query, h)
	if err != nil {
		e.t.Fatalf("dial %s as %s: %v", room, email, err)
	}
	return newWSClient(e.t, ws)
}

// wsFrame is a server frame as decoded, with its raw text for failure messages.
type wsFrame struct {
	wire.Frame
	raw string
}

// wsClient reads every frame into a channel, so tests can wait for what they expect.
type wsClient struct {
	t      *testing.T
	ws     *websocket.Conn
	frames chan wsFrame
	done   chan struct{}
	err    error // the read error that ended the stream
}

func newWSClient(t *testing.T, ws *websocket.Conn) *wsClient {
	c := &wsClient{t: t, ws: ws, frames: make(chan wsFrame, 10000), done: make(chan struct{})}
	ws.SetReadLimit(1 << 20)
	go c.read()
	t.Cleanup(func() { _ = ws.CloseNow() })
	return c
}

func (c *wsClient) read() {
	defer close(c.done)
	defer close(c.frames)
	for {
		_, data, err := c.ws.Read(context.Background())
		if err != nil {
			c.err = err
			return
		}
		var f wsFrame
		if err := json.Unmarshal(data, &f); err != nil {
			c.t.Errorf("server sent a frame that is not JSON: %q", data)
		}
		f.raw = string(data)
		c.frames <- f
	}
}

// next returns the next frame, failing the test if none comes in time.
func (c *wsClient) next() wsFrame {
	c.t.Helper()
	select {
	case f, ok := <-c.frames:
		if !ok {
			c.t.Fatalf("connection closed while waiting for a frame: %v", c.err)
		}
		return f
	case <-time.After(5 * time.Second):
		c.t.Fatal("timed out waiting for a frame")
	}
	return wsFrame{}
}

// expect returns the next frame, which must be of type typ. Presence frames are
// skipped unless asked for: one may be told twice when connections start at once.
func (c *wsClient) expect(typ string) wsFrame {
	c.t.Helper()
	f := c.next()
	for f.Type == wire.TypePresence && typ != wire.TypePresence {
		f = c.next()
	}
	if f.Type != typ {
		c.t.Fatalf("got frame %s, want type %q", f.raw, typ)
	}
	return f
}

// skipTo skips frames until one of type typ (failing on error frames unless asked for).
func (c *wsClient) skipTo(typ string) wsFrame {
	c.t.Helper()
	for {
		f := c.next()
		if f.Type == typ {
			return f
		}
		if f.Type == wire.TypeError {
			c.t.Fatalf("unexpected error frame while waiting for %q: %s", typ, f.raw)
		}
	}
}

// messages collects n message frames, ignoring acks and presence.
func (c *wsClient) messages(n int) []wsFrame {
	c.t.Helper()
	var out []wsFrame
	for len(out) < n {
		f := c.next()
		switch f.Type {
		case wire.TypeMessage:
			out = append(out, f)
		case wire.TypeError, wire.TypeEnded:
			c.t.Fatalf("unexpected frame while collecting messages: %s", f.raw)
		}
	}
	return out
}

func (c *wsClient) sendJSON(v string) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.ws.Write(ctx, websocket.MessageText, []byte(v)); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

func (c *wsClient) send(id, text string) {
	c.t.Helper()
	b, _ := json.Marshal(map[string]string{"type": "send", "id": id, "text": text})
	c.sendJSON(string(b))
}

// closed waits for the server to close the connection and returns its close status.
func (c *wsClient) closed() websocket.StatusCode {
	c.t.Helper()
	select {
	case <-c.done:
	case <-time.After(10 * time.Second):
		c.t.Fatal("the server did not close the connection")
	}
	return websocket.CloseStatus(c.err)
}

// quiet checks that no frame arrives for a short while. Presence frames are state,
// and may come late or twice (the peer's state is told once the connection has
// entered, which can be after live messages), so they are let through.
func (c *wsClient) quiet(d time.Duration) {
	c.t.Helper()
	end := time.After(d)
	for {
		select {
		case f, ok := <-c.frames:
			if ok && f.Type != wire.TypePresence {
				c.t.Fatalf("unexpected frame %s", f.raw)
			}
			if !ok {
				return
			}
		case <-end:
			return
		}
	}
}

// checkSeqs checks that frames carry seqs from..from+len-1 in order.
func checkSeqs(t *testing.T, who string, frames []wsFrame, from int64) {
	t.Helper()
	for i, f := range frames {
		if f.Seq != from+int64(i) {
			t.Fatalf("%s: message %d has seq %d, want %d", who, i, f.Seq, from+int64(i))
		}
	}
}

// enterBoth connects a host and a participant and reads their opening frames.
func (e *wsEnv) enterBoth(room string) (host, guest *wsClient, session string) {
	e.t.Helper()
	host = e.dial(room, "host@x.org", "")
	w := host.expect(wire.TypeWelcome)
	guest = e.dial(room, "guest@x.org", "")
	guest.expect(wire.TypeWelcome)
	guest.presence("host@x.org", true)
	host.presence("guest@x.org", true)
	return host, guest, w.Session
}

// presence waits for the presence frame saying email is (or is not) online. Presence
// may be told twice when two connections start at once, so other presence frames are
// skipped.
func (c *wsClient) presence(email string, online bool) {
	c.t.Helper()
	for {
		f := c.skipTo(wire.TypePresence)
		if f.Email == email && f.Online == online {
			return
		}
	}
}

// testLogger logs through t, so a failing test shows what the server said.
func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
