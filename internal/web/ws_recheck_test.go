package web

import (
	"context"
	"testing"
	"time"

	"parley/internal/chat"
	"parley/internal/wire"
)

// TestWSEndedEventLost: a chat ended without its ended event reaching this replica
// (a broker outage) still refuses sends once the connection re-reads the row.
func TestWSEndedEventLost(t *testing.T) {
	e := newWSEnv(t, Config{})
	e.srv.recheck = 20 * time.Millisecond
	host, guest, session := e.enterBoth("lost-end")
	host.send("c-1", "before the end")
	guest.messages(1)
	// Ended in the store only: no event is published.
	if won, err := e.store.End(context.Background(), session, "guest@x.org", chat.Now()); err != nil || !won {
		t.Fatalf("End: %v %v", won, err)
	}
	time.Sleep(2 * e.srv.recheck) // let the connection's copy of the row go stale
	host.send("c-2", "after the end")
	if f := host.skipTo(wire.TypeError); f.Code != "chat_ended" || f.ID != "c-2" {
		t.Fatalf("send after an unannounced end: %s", f.raw)
	}
}
