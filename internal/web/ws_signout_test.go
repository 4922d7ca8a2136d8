package web

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/coder/websocket"

	"parley/internal/wire"
)

// TestWSSignOutElsewhereClosesTheChat: "Sign out everywhere" on another replica ends
// the person's sign-ins in the shared store and cannot reach this replica's
// connections directly. The person's open chat here is closed "going away" at a ping
// once this replica's cached copy of the sign-in is stale, and reconnecting is refused
// (401); the other person's chat stays open and working.
func TestWSSignOutElsewhereClosesTheChat(t *testing.T) {
	e := newWSEnv(t, Config{PingInterval: 50 * time.Millisecond})
	auth := e.srv.auth
	if v, ok := auth.(verifiedOnly); ok {
		auth = v.authenticator
	}
	auth.(*loginAuth).ttl = 100 * time.Millisecond
	host := e.dial("elsewhere", "host@x.org", "")
	host.expect(wire.TypeWelcome)
	guestCookie := e.cookie("guest@x.org")
	e.join("elsewhere", "guest@x.org")
	ws, _, err := e.dialRaw("elsewhere", "", http.Header{"Cookie": {guestCookie}, "Origin": {e.cfg.PublicURL}})
	if err != nil {
		t.Fatal(err)
	}
	guest := newWSClient(t, ws)
	guest.expect(wire.TypeWelcome)

	// Another replica's "Sign out everywhere": the rows go, this server is not told.
	if _, err := e.store.RevokeLogins(context.Background(), "guest@x.org"); err != nil {
		t.Fatal(err)
	}
	if code := guest.closed(); code != websocket.StatusGoingAway {
		t.Fatalf("the signed-out person's chat closed with %d, want 1001 (going away)", code)
	}
	if _, res, err := e.dialRaw("elsewhere", "", http.Header{"Cookie": {guestCookie}, "Origin": {e.cfg.PublicURL}}); err == nil || res == nil || res.StatusCode != http.StatusUnauthorized {
		t.Fatalf("reconnecting after the sign-out: %v %v, want 401", res, err)
	}
	host.send("c-1", "still here?")
	if f := host.skipTo(wire.TypeAck); f.Seq != 1 {
		t.Fatalf("the host's chat after the guest's sign-out: ack %s", f.raw)
	}
}
