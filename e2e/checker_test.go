package e2e

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

// TestOutsideChecker plays the outside checker of the protocol against the real binary:
// two people chat, a third is refused, a reconnect replays exactly what was missed, bad
// input is refused to its sender only, and the end stops sending.
func TestOutsideChecker(t *testing.T) {
	srv := startServer(t, t.TempDir())
	room := "checker"
	// A join enters the room's chat, so by the time Ann connects Bob is in it too.
	ann := join(t, srv.URL, room, "ann@example.org")
	bob := join(t, srv.URL, room, "bob@example.org")

	a, aw := ann.mustDial("")
	if aw.Role != "host" || aw.Peer == nil || *aw.Peer != bob.email || aw.Status != "inprogress" || aw.LastSeq != 0 || aw.Session == "" {
		t.Fatalf("host welcome = %+v (peer %s)", aw, fmtPeer(aw.Peer))
	}
	b, bw := bob.mustDial("")
	if bw.Role != "participant" || bw.Peer == nil || *bw.Peer != ann.email || bw.Session != aw.Session {
		t.Fatalf("participant welcome = %+v (peer %s)", bw, fmtPeer(bw.Peer))
	}

	// Two people chat; both see every message once, in order.
	if seq := a.say("a-1", "hello bob"); seq != 1 {
		t.Fatalf("first ack seq = %d, want 1", seq)
	}
	if seq := b.say("b-1", "hi ann"); seq != 2 {
		t.Fatalf("second ack seq = %d, want 2", seq)
	}
	for who, c := range map[string]*conn{"ann": a, "bob": b} {
		got := c.messagesUntil(2)
		checkSeqs(t, who, got, 1, 2)
		if got[0].From != ann.email || got[0].To != bob.email || got[0].Text != "hello bob" || got[0].Kind != "chat" || got[0].ID != "a-1" {
			t.Fatalf("%s: first message = %+v", who, got[0])
		}
		if _, err := time.Parse(time.RFC3339Nano, got[0].At); err != nil || !strings.HasSuffix(got[0].At, "Z") {
			t.Fatalf("%s: at = %q, want RFC 3339 UTC", who, got[0].At)
		}
	}

	// A resend of an id is acknowledged with the same seq and stores nothing.
	if seq := a.say("a-1", "hello bob"); seq != 1 {
		t.Fatalf("resend ack seq = %d, want 1", seq)
	}

	// A third person is told at the join form (409, before any email), and their
	// WebSocket to the room is refused with room_full and closed.
	res, err := http.PostForm(srv.URL+"/join", url.Values{"room": {room}, "email": {"cat@example.org"}})
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusConflict {
		t.Fatalf("third person's join: %d, want 409", res.StatusCode)
	}
	cat := join(t, srv.URL, room+"-elsewhere", "cat@example.org")
	cat.room = room
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := cat.dial(ctx, "")
	if err != nil {
		t.Fatalf("third person dial: %v", err)
	}
	if f := c.nextAny(); f.Type != "error" || f.Code != "room_full" {
		t.Fatalf("third person got %+v, want error room_full", f)
	}
	if code := c.closeStatus(10 * time.Second); code != 4003 && code != 1008 {
		t.Fatalf("third person close code = %d, want 4003 or 1008", code)
	}

	// Bob drops; Ann sends two more; Bob reconnects with after=2 and gets exactly those.
	b.ws.CloseNow()
	a.say("a-2", "are you there?")
	a.say("a-3", "hello?")
	b2, bw2 := bob.mustDial("after=2")
	if bw2.LastSeq != 4 {
		t.Fatalf("reconnect welcome last_seq = %d, want 4", bw2.LastSeq)
	}
	checkSeqs(t, "bob after reconnect", b2.messagesUntil(4), 3, 4)
	checkSeqs(t, "ann", a.messagesUntil(4), 3, 4) // no second copy of the resent a-1

	// Bad input gets a clear error to its sender only; the room goes on.
	bad := []struct {
		name  string
		frame any
		code  string
	}{
		{"NotJSON", "this is not json", "invalid_frame"},
		{"UnknownType", map[string]string{"type": "shout", "id": "x"}, "invalid_frame"},
		{"MissingID", map[string]string{"type": "send", "text": "hi"}, "invalid_frame"},
		{"Empty", map[string]string{"type": "send", "id": "e-1", "text": "   "}, "empty"},
		{"TooLong", map[string]string{"type": "send", "id": "l-1", "text": strings.Repeat("é", 4001)}, "too_long"},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			if s, ok := tc.frame.(string); ok {
				a.sendRaw(s)
			} else {
				a.send(tc.frame)
			}
			f := a.nextAny()
			for f.Type == "presence" {
				f = a.nextAny()
			}
			if f.Type != "error" || f.Code != tc.code || f.Message == "" {
				t.Fatalf("got %+v, want error %s with a message", f, tc.code)
			}
		})
	}
	if seq := a.say("a-4", strings.Repeat("é", 4000)); seq != 5 {
		t.Fatalf("after bad input, ack seq = %d, want 5", seq)
	}
	if got := b2.messagesUntil(5); len(got) != 1 || got[0].Seq != 5 {
		t.Fatalf("bob after Ann's bad input got %+v, want only seq 5", got)
	}

	checkSeqs(t, "ann", a.messagesUntil(5), 5, 5)

	// Ending: both are told, and sending after it is refused.
	a.send(map[string]string{"type": "end"})
	if f := a.next("ended"); f.By != ann.email {
		t.Fatalf("ended by %q, want %q", f.By, ann.email)
	}
	b2.next("ended")
	b2.send(map[string]string{"type": "send", "id": "b-late", "text": "wait"})
	if f := b2.next("error"); f.Code != "chat_ended" {
		t.Fatalf("send after end: %+v, want chat_ended", f)
	}
}
