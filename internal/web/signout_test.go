package web

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

// TestSignOutRevokesCopiedCookie: after POST /signout, a copy of the cookie (taken
// before, as a thief or a shared computer would keep it) is refused at once: 401 on
// the WebSocket, and /history shows nothing of the person.
func TestSignOutRevokesCopiedCookie(t *testing.T) {
	e := newSecEnv(t, Config{})
	c := e.signIn("lobby", "ann@example.org")
	copied := *c
	ws, _, err := e.dialWS("lobby", e.wsHeaders(c))
	if err != nil {
		t.Fatalf("signed in, the WebSocket was refused: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, _, err := ws.Read(ctx); err != nil { // the first frame: the chat was entered
		t.Fatal(err)
	}
	ws.CloseNow()
	if res, body := e.request(http.MethodGet, "/history", nil, nil, c); res.StatusCode != http.StatusOK || !strings.Contains(body, "lobby") {
		t.Fatalf("history before sign-out: %d, lobby listed %v", res.StatusCode, strings.Contains(body, "lobby"))
	}

	res, _ := e.request(http.MethodPost, "/signout", url.Values{}, nil, c)
	if res.StatusCode != http.StatusSeeOther {
		t.Fatalf("sign out: %d", res.StatusCode)
	}
	_, res, err = e.dialWS("lobby", e.wsHeaders(&copied))
	if err == nil || res == nil || res.StatusCode != http.StatusUnauthorized {
		t.Fatalf("copied cookie on the WebSocket after sign-out: %v %v, want 401", err, res)
	}
	res, body := e.request(http.MethodGet, "/history", nil, nil, &copied)
	if strings.Contains(body, "ann@example.org") || strings.Contains(body, "lobby") {
		t.Fatalf("history after sign-out (%d) still shows the person:\n%s", res.StatusCode, body)
	}
	if res, _ := e.request(http.MethodGet, "/rooms/lobby", nil, nil, &copied); res.StatusCode != http.StatusSeeOther {
		t.Fatalf("room page after sign-out: %d, want 303 home", res.StatusCode)
	}
}

// TestSignOutEverywhere: the history page offers "Sign out everywhere"; pressing it in
// one browser ends the person's sign-ins in every browser (another person's stays),
// and closes their open WebSocket so its page finds itself signed out.
func TestSignOutEverywhere(t *testing.T) {
	e := newSecEnv(t, Config{})
	laptop := e.signIn("lobby", "ann@example.org")
	phone := e.signIn("lobby", "ann@example.org")
	bob := e.signIn("lobby", "bob@example.org")
	ws, _, err := e.dialWS("lobby", e.wsHeaders(laptop))
	if err != nil {
		t.Fatal(err)
	}
	defer ws.CloseNow()

	_, body := e.request(http.MethodGet, "/history", nil, nil, phone)
	mustContain(t, body, `action="/signout/everywhere"`, "Sign out everywhere")
	if res, _ := e.request(http.MethodPost, "/signout/everywhere", url.Values{}, nil, phone); res.StatusCode != http.StatusSeeOther {
		t.Fatalf("sign out everywhere: %d", res.StatusCode)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for {
		if _, _, err := ws.Read(ctx); err != nil {
			break // closed by the server (or the deadline, which the next check reports)
		}
	}
	if ctx.Err() != nil {
		t.Fatal("the laptop's WebSocket stayed open after sign out everywhere")
	}
	for name, c := range map[string]*http.Cookie{"laptop": laptop, "phone": phone} {
		if _, res, err := e.dialWS("lobby", e.wsHeaders(c)); err == nil || res.StatusCode != http.StatusUnauthorized {
			t.Errorf("%s after sign out everywhere: %v, want 401", name, err)
		}
	}
	if ws, _, err := e.dialWS("lobby", e.wsHeaders(bob)); err != nil {
		t.Errorf("someone else was signed out too: %v", err)
	} else {
		ws.CloseNow()
	}
}
