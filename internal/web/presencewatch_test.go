package web

import (
	"context"
	"testing"
	"time"

	"parley/internal/chat"
	"parley/internal/testenv"
	"parley/internal/wire"
)

// TestPresenceWatchTellsAVanishedPeer: the guest is "connected through another
// replica" (a presence claim only). When the claim disappears without any presence
// event, as when that replica dies and its claims expire, the host is told the
// guest is offline by the periodic check.
func TestPresenceWatchTellsAVanishedPeer(t *testing.T) {
	e := newWSEnv(t, Config{PresenceCheck: 20 * time.Millisecond})
	ctx := context.Background()
	sess, _, err := e.store.Enter(ctx, "vanish", "host@x.org", chat.Now())
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.store.Enter(ctx, "vanish", "guest@x.org", chat.Now()); err != nil {
		t.Fatal(err)
	}
	if _, err := e.srv.presence.Connected(ctx, sess.ID, "guest@x.org"); err != nil {
		t.Fatal(err)
	}
	host := e.dial("vanish", "host@x.org", "")
	host.expect(wire.TypeWelcome)
	host.presence("guest@x.org", true)
	waitFor(t, "the watch to see the guest online", func() bool {
		online, seen := e.srv.hub.PresenceObserved(sess.ID, "guest@x.org")
		return seen && online
	})
	// The claim is gone with no event published: only the check can notice.
	if _, err := e.srv.presence.Disconnected(ctx, sess.ID, "guest@x.org"); err != nil {
		t.Fatal(err)
	}
	host.presence("guest@x.org", false)
}

// waitFor polls cond until it holds, for 5 s at most.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testenv.Eventually(t, 5*time.Second, cond, what)
}
