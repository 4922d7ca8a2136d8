package e2e

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"parley/internal/wire"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/coder/websocket/wsjson"
)

// frame is any server frame of the protocol (docs/protocol.md).
type frame = wire.Frame

// person is someone using Parley through its HTTP and WebSocket contract, as a browser
// or an outside checker does.
type person struct {
	t      *testing.T
	base   string
	email  string
	room   string
	cookie string
}

// join signs in through POST /join and returns the person with their cookie.
func join(t *testing.T, base, room, email string) *person {
	t.Helper()
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := noRedirect.PostForm(base+"/join", url.Values{"room": {room}, "email": {email}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/rooms/"+room {
		t.Fatalf("POST /join %s as %s: %d to %q, want 303 to /rooms/%s", room, email, resp.StatusCode, resp.Header.Get("Location"), room)
	}
	var cookies []string
	for _, c := range resp.Cookies() {
		cookies = append(cookies, c.Name+"="+c.Value)
	}
	if len(cookies) == 0 {
		t.Fatalf("POST /join set no cookie")
	}
	return &person{t: t, base: base, email: email, room: room, cookie: strings.Join(cookies, "; ")}
}

// conn is one open WebSocket of a person.
type conn struct {
	t      *testing.T
	ws     *websocket.Conn
	frames chan frame
	closed chan error
	held   []frame // frames read while waiting for something else, returned first
}

// dial opens the room's WebSocket with the person's cookie; query is e.g. "after=3".
func (p *person) dial(ctx context.Context, query string) (*conn, error) {
	u := strings.Replace(p.base, "http", "ws", 1) + "/rooms/" + p.room + "/ws"
	if query != "" {
		u += "?" + query
	}
	h := http.Header{"Cookie": {p.cookie}, "Origin": {p.base}}
	ws, _, err := websocket.Dial(ctx, u, &websocket.DialOptions{HTTPHeader: h})
	if err != nil {
		return nil, err
	}
	c := &conn{t: p.t, ws: ws, frames: make(chan frame, 10000), closed: make(chan error, 1)}
	go c.read()
	return c, nil
}

// mustDial is dial that fails the test on error, and checks the welcome frame.
func (p *person) mustDial(query string) (*conn, frame) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := p.dial(ctx, query)
	if err != nil {
		p.t.Fatalf("%s: dial: %v", p.email, err)
	}
	p.t.Cleanup(func() { c.ws.CloseNow() })
	w := c.next("welcome")
	if w.You != p.email || w.Room != p.room {
		p.t.Fatalf("welcome %+v, want you=%s room=%s", w, p.email, p.room)
	}
	return c, w
}

func (c *conn) read() {
	for {
		var f frame
		if err := wsjson.Read(context.Background(), c.ws, &f); err != nil {
			c.closed <- err
			close(c.frames)
			return
		}
		c.frames <- f
	}
}

// next returns the next frame of the given type, skipping presence, ack and message
// frames, and fails on anything else (an unexpected error frame above all).
func (c *conn) next(want string) frame {
	c.t.Helper()
	for len(c.held) > 0 {
		f := c.nextAny()
		if f.Type == want {
			return f
		}
		if !skippable(f) {
			c.t.Fatalf("got %+v while waiting for %q", f, want)
		}
	}
	timeout := time.After(20 * time.Second)
	for {
		select {
		case f, ok := <-c.frames:
			if !ok {
				c.t.Fatalf("connection closed while waiting for %q: %v", want, <-c.closed)
			}
			if f.Type == want {
				return f
			}
			if skippable(f) {
				continue
			}
			c.t.Fatalf("got %+v while waiting for %q", f, want)
		case <-timeout:
			c.t.Fatalf("no %q frame within 20 s", want)
		}
	}
}

// send sends a frame as JSON.
func (c *conn) send(v any) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := wsjson.Write(ctx, c.ws, v); err != nil {
		c.t.Fatalf("send: %v", err)
	}
}

// say sends a chat message and returns its acknowledged seq.
func (c *conn) say(id, text string) int64 {
	c.t.Helper()
	c.send(map[string]string{"type": "send", "id": id, "text": text})
	var held []frame
	defer func() { c.held = append(held, c.held...) }()
	for {
		f := c.nextAny()
		switch {
		case f.Type == "ack" && f.ID == id:
			return f.Seq
		case f.Type == "error":
			c.t.Fatalf("send %s: error %s: %s", id, f.Code, f.Message)
		default:
			held = append(held, f)
		}
	}
}

// nextAny returns the next frame of any type.
func (c *conn) nextAny() frame {
	c.t.Helper()
	if len(c.held) > 0 {
		f := c.held[0]
		c.held = c.held[1:]
		return f
	}
	select {
	case f, ok := <-c.frames:
		if !ok {
			c.t.Fatalf("connection closed: %v", <-c.closed)
		}
		return f
	case <-time.After(20 * time.Second):
		c.t.Fatalf("no frame within 20 s")
	}
	return frame{}
}

// messagesUntil collects message frames until one has seq >= last.
func (c *conn) messagesUntil(last int64) []frame {
	c.t.Helper()
	var got []frame
	for {
		f := c.nextAny()
		if f.Type != "message" {
			continue
		}
		got = append(got, f)
		if f.Seq >= last {
			return got
		}
	}
}

// closeStatus waits for the connection to close and returns its close code.
func (c *conn) closeStatus(timeout time.Duration) websocket.StatusCode {
	c.t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case _, ok := <-c.frames:
			if !ok {
				err := <-c.closed
				c.closed <- err
				return websocket.CloseStatus(err)
			}
		case <-deadline:
			c.t.Fatalf("connection still open after %s", timeout)
		}
	}
}

// checkSeqs fails unless msgs have seqs from..to, each once, in order.
func checkSeqs(t *testing.T, who string, msgs []frame, from, to int64) {
	t.Helper()
	if int64(len(msgs)) != to-from+1 {
		t.Fatalf("%s got %d messages, want %d (seq %d..%d)", who, len(msgs), to-from+1, from, to)
	}
	for i, m := range msgs {
		if m.Seq != from+int64(i) {
			t.Fatalf("%s: message %d has seq %d, want %d", who, i, m.Seq, from+int64(i))
		}
	}
}

var errTimeout = errors.New("timeout")

func fmtPeer(p *string) string {
	if p == nil {
		return "<null>"
	}
	return fmt.Sprintf("%q", *p)
}

// sendRaw sends a text frame as is.
func (c *conn) sendRaw(s string) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.ws.Write(ctx, websocket.MessageText, []byte(s)); err != nil {
		c.t.Fatalf("send: %v", err)
	}
}

// skippable tells the frames next passes over on its way to the one it waits for.
func skippable(f frame) bool {
	return f.Type == "presence" || f.Type == "ack" || f.Type == "message"
}
