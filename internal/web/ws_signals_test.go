package web

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"parley/internal/chat"
	"parley/internal/wire"
)

// framesUntilMessage reads c's frames up to and including the next message frame.
func framesUntilMessage(c *wsClient) []wsFrame {
	c.t.Helper()
	var out []wsFrame
	for {
		f := c.next()
		out = append(out, f)
		if f.Type == wire.TypeMessage {
			return out
		}
	}
}

func countType(frames []wsFrame, typ string) int {
	n := 0
	for _, f := range frames {
		if f.Type == typ {
			n++
		}
	}
	return n
}

// TestWSTypingOnlyToThePeerRateBounded: a burst of typing frames reaches each of the
// other person's connections once, and none of the typist's own; the message sent
// after the burst marks where the typing would have been.
func TestWSTypingOnlyToThePeerRateBounded(t *testing.T) {
	e := newWSEnv(t, Config{})
	host := e.dial("typing", "host@x.org", "")
	host.expect(wire.TypeWelcome)
	guest := e.dial("typing", "guest@x.org", "")
	guest.expect(wire.TypeWelcome)
	host2 := e.dial("typing", "host@x.org", "") // another tab of the typist
	host2.expect(wire.TypeWelcome)
	for range 20 {
		host.sendJSON(`{"type":"typing"}`)
	}
	host.send("c-1", "typed")
	// The message reaches the local connections at once and typing through the bus, so
	// read until both are in, whichever comes first.
	var got []wsFrame
	for countType(got, wire.TypeTyping) == 0 || countType(got, wire.TypeMessage) == 0 {
		got = append(got, guest.next())
	}
	if n := countType(got, wire.TypeTyping); n != 1 {
		t.Fatalf("the peer got %d typing frames for a burst of 20, want 1: %v", n, got)
	}
	for _, f := range got {
		if f.Type == wire.TypeTyping && f.From != "host@x.org" {
			t.Fatalf("typing %s", f.raw)
		}
	}
	for _, c := range []*wsClient{host, host2} {
		if n := countType(framesUntilMessage(c), wire.TypeTyping); n != 0 {
			t.Fatalf("the typist's own connection got %d typing frames", n)
		}
	}
	for _, f := range got {
		if f.Type == wire.TypeMessage && f.Seq != 1 {
			t.Fatalf("typing took seqs: the message has seq %d", f.Seq)
		}
	}
}

// TestWSReceipts: cursors are stored, told to the chat, monotonic, refused beyond the
// last seq, and come back in welcome.receipts after a reconnect.
func TestWSReceipts(t *testing.T) {
	e := newWSEnv(t, Config{})
	host := e.dial("receipts", "host@x.org", "")
	w := host.expect(wire.TypeWelcome)
	if w.Receipts == nil || w.Receipts["host@x.org"] != (wire.Cursor{}) {
		t.Fatalf("welcome %s: want receipts with the host at 0", w.raw)
	}
	guest := e.dial("receipts", "guest@x.org", "")
	guest.expect(wire.TypeWelcome)
	for _, id := range []string{"c-1", "c-2", "c-3"} {
		host.send(id, "hello "+id)
	}
	guest.messages(3)
	guest.sendJSON(`{"type":"read","seq":2}`)
	if f := host.skipTo(wire.TypeReceipt); f.By != "guest@x.org" || f.Received != 2 || f.Read != 2 {
		t.Fatalf("receipt %s, want the guest at received 2 read 2", f.raw)
	}
	guest.sendJSON(`{"type":"received","seq":1}`) // lower: ignored
	guest.sendJSON(`{"type":"read","seq":4}`)     // beyond the last seq
	if f := guest.skipTo(wire.TypeError); f.Code != chat.EInvalidFrame {
		t.Fatalf("read beyond the last seq: %s", f.raw)
	}
	guest.sendJSON(`{"type":"received","seq":3}`)
	if f := host.skipTo(wire.TypeReceipt); f.Received != 3 || f.Read != 2 {
		t.Fatalf("receipt %s, want received 3 read 2", f.raw)
	}
	again := e.visit("receipts", "host@x.org", "")
	w = again.expect(wire.TypeWelcome)
	if w.Receipts["guest@x.org"] != (wire.Cursor{Received: 3, Read: 2}) || w.Receipts["host@x.org"] != (wire.Cursor{}) {
		t.Fatalf("welcome after reconnecting %s: want the guest at 3/2, the host at 0", w.raw)
	}
	if last, _ := e.store.LastSeq(context.Background(), w.Session); last != 3 || w.LastSeq != 3 {
		t.Fatalf("receipts changed the last seq: %d", last)
	}
}

// TestWSRevisitEndedRoom: reopening a room whose chat ended shows that chat, ended,
// with its messages; it starts nothing. POST /join starts a new chat, and the next
// connection is in it. Someone with no chat in a room is told no_chat.
func TestWSRevisitEndedRoom(t *testing.T) {
	e := newWSEnv(t, Config{})
	host := e.dial("again", "host@x.org", "")
	first := host.expect(wire.TypeWelcome)
	host.send("c-1", "before the end")
	host.expect(wire.TypeAck)
	host.sendJSON(`{"type":"end"}`)
	host.skipTo(wire.TypeEnded)

	c := e.visit("again", "host@x.org", "")
	w := c.expect(wire.TypeWelcome)
	if w.Session != first.Session || (w.Status != "ending" && w.Status != "completed") || w.LastSeq != 1 {
		t.Fatalf("revisit welcome %s: want the ended chat %s", w.raw, first.Session)
	}
	if m := c.messages(1); m[0].Text != "before the end" {
		t.Fatalf("replay %s", m[0].raw)
	}
	c.skipTo(wire.TypeEnded)
	if _, err := e.store.InProgress(context.Background(), "again"); !chat.IsCode(err, chat.ENotFound) {
		t.Fatalf("a visit started a chat: %v", err)
	}

	form := url.Values{"room": {"again"}, "email": {"host@x.org"}}
	req, _ := http.NewRequest(http.MethodPost, e.ts.URL+"/join", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Cookie", e.cookie("host@x.org"))
	req.Header.Set("Origin", e.cfg.PublicURL)
	res, err := (&http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusSeeOther {
		t.Fatalf("POST /join: %d", res.StatusCode)
	}
	n := e.visit("again", "host@x.org", "")
	w = n.expect(wire.TypeWelcome)
	if w.Session == first.Session || w.Status != "inprogress" || w.LastSeq != 0 || w.Role != "host" {
		t.Fatalf("after POST /join, welcome %s: want a new chat in progress", w.raw)
	}

	none := e.visit("never", "host@x.org", "")
	if f := none.expect(wire.TypeError); f.Code != chat.ENoChat {
		t.Fatalf("a room without a chat: %s", f.raw)
	}
	if code := none.closed(); code != 1000 {
		t.Fatalf("closed with %d, want 1000", code)
	}
}
