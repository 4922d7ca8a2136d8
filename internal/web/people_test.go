package web

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"parley/internal/chat"
	"parley/internal/wire"
)

// TestRoomNamesIgnoreCase: "DEMO2" and "demo2" are one room; the join form and the
// room's URL both lead to the lower-case name, and both people end up in one chat.
func TestRoomNamesIgnoreCase(t *testing.T) {
	e := newPagesEnv(t)
	c := newPagesClient(t, e.srv)
	res, body := c.post("/join", url.Values{"room": {"DEMO2"}, "email": {"ann@example.org"}}, nil)
	if res.StatusCode != http.StatusSeeOther || res.Header.Get("Location") != "/rooms/demo2" {
		t.Fatalf("join DEMO2: %d to %q\n%s", res.StatusCode, res.Header.Get("Location"), body)
	}
	cookie := c.join("demo2", "ann@example.org")
	res, _ = c.get("/rooms/Demo2", cookie)
	if res.StatusCode != http.StatusMovedPermanently || res.Header.Get("Location") != "/rooms/demo2" {
		t.Fatalf("GET /rooms/Demo2: %d to %q, want a redirect to /rooms/demo2", res.StatusCode, res.Header.Get("Location"))
	}
	res, body = c.get("/?room=DEMO2", nil)
	if res.StatusCode != http.StatusOK || !strings.Contains(body, `name="room" value="demo2"`) {
		t.Fatalf("home page prefilled with %d:\n%s", res.StatusCode, body)
	}
	ctx := context.Background()
	a, _, err := e.store.Enter(ctx, "demo2", "ann@example.org", chat.Now())
	if err != nil {
		t.Fatal(err)
	}
	// The WebSocket enters by its URL's room name, upper-case or not.
	bob := c.join("demo2", "bob@example.org")
	dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	conn, _, err := websocket.Dial(dctx, "ws"+strings.TrimPrefix(e.srv.URL, "http")+"/rooms/DEMO2/ws",
		&websocket.DialOptions{HTTPHeader: http.Header{"Cookie": {bob.Name + "=" + bob.Value}, "Origin": {e.srv.URL}}})
	if err != nil {
		t.Fatal(err)
	}
	w := newWSClient(t, conn).expect(wire.TypeWelcome)
	if w.Session != a.ID || w.Room != "demo2" || w.Role != "participant" {
		t.Fatalf("bob's welcome %s, want ann's chat %s in demo2", w.raw, a.ID)
	}
}

// TestHistoryInReaderZone: the zone the browser sent with the sign-in form is stored
// with the person, and the history page shows every time in it and says which; with
// no zone known it says the times are UTC.
func TestHistoryInReaderZone(t *testing.T) {
	e := newPagesEnv(t)
	c := newPagesClient(t, e.srv)
	sess := e.seedChat(t, "tz", "ann@example.org", "bob@example.org", "hi")
	e.finish(t, sess, "ann@example.org", true, "")
	started := sess.InitiatedAt.In(mustZone(t, "Asia/Kolkata")).Format("15:04 MST")

	res, _ := c.post("/join", url.Values{"room": {"tz"}, "email": {"ann@example.org"}, "tz": {"Asia/Kolkata"}}, nil)
	ann := sessionCookie(t, res)
	_, body := c.get("/history", ann)
	mustContain(t, body, "Times are in your time zone (Asia/Kolkata).", started)
	mustNotContain(t, body, " UTC</span>")

	res, _ = c.post("/join", url.Values{"room": {"tz"}, "email": {"bob@example.org"}, "tz": {"Not/AZone"}}, nil)
	bob := sessionCookie(t, res)
	_, body = c.get("/history", bob)
	mustContain(t, body, "Times are in UTC", sess.InitiatedAt.UTC().Format("15:04")+" UTC")
}

func mustZone(t *testing.T, name string) *time.Location {
	t.Helper()
	loc, err := time.LoadLocation(name)
	if err != nil {
		t.Fatal(err)
	}
	return loc
}
