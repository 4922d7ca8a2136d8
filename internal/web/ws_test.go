package web

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"parley/internal/testenv"
	"parley/internal/wire"
)

func TestWSWelcomeFrame(t *testing.T) {
	e := newWSEnv(t, Config{})
	host := e.dial("r1", "host@x.org", "")
	w := host.expect(wire.TypeWelcome)
	var keys map[string]any
	_ = json.Unmarshal([]byte(w.raw), &keys)
	want := []string{"last_seq", "peer", "receipts", "role", "room", "session", "status", "type", "you"}
	if got := slices.Sorted(mapKeys(keys)); !slices.Equal(got, want) {
		t.Fatalf("welcome fields %v, want %v", got, want)
	}
	if w.Role != "host" || w.You != "host@x.org" || w.Peer != nil || w.Status != "inprogress" || w.Room != "r1" || w.LastSeq != 0 || len(w.Session) != 32 {
		t.Fatalf("host welcome %s", w.raw)
	}
	guest := e.dial("r1", "guest@x.org", "")
	g := guest.expect(wire.TypeWelcome)
	if g.Role != "participant" || g.Peer == nil || *g.Peer != "host@x.org" || g.Session != w.Session {
		t.Fatalf("guest welcome %s", g.raw)
	}
	// The host's own connect may still be under way: it may first be told offline.
	guest.presence("host@x.org", true)
	host.presence("guest@x.org", true)
	guest.ws.Close(websocket.StatusNormalClosure, "")
	host.presence("guest@x.org", false)
}

func mapKeys(m map[string]any) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

func TestWSTwoPeopleChat(t *testing.T) {
	e := newWSEnv(t, Config{})
	host, guest, _ := e.enterBoth("chat")
	const each = 25
	var wg sync.WaitGroup
	for who, c := range map[string]*wsClient{"h": host, "g": guest} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				b, _ := json.Marshal(map[string]string{"type": "send", "id": fmt.Sprintf("%s-%d", who, i), "text": fmt.Sprintf("hello <%d> & \"quoted\"", i)})
				_ = c.ws.Write(context.Background(), websocket.MessageText, b)
			}
		}()
	}
	wg.Wait()
	for name, c := range map[string]*wsClient{"host": host, "guest": guest} {
		var msgs []wsFrame
		acks := 0
		for len(msgs) < 2*each || acks < each {
			f := c.next()
			switch f.Type {
			case wire.TypeMessage:
				msgs = append(msgs, f)
			case wire.TypeAck:
				acks++
			case wire.TypePresence: // the other side's online state, possibly told twice
			default:
				t.Fatalf("%s: unexpected frame %s", name, f.raw)
			}
		}
		checkSeqs(t, name, msgs, 1)
		for _, m := range msgs {
			if m.From == "host@x.org" && m.To != "guest@x.org" || m.From == "guest@x.org" && m.To != "host@x.org" {
				t.Fatalf("%s: from/to wrong in %s", name, m.raw)
			}
			if m.Kind != "chat" || !strings.HasPrefix(m.Text, "hello <") {
				t.Fatalf("%s: %s", name, m.raw)
			}
			if _, err := time.Parse(time.RFC3339Nano, m.At); err != nil || len(m.At) != len("2026-11-27T12:00:00.123456Z") {
				t.Fatalf("%s: at %q", name, m.At)
			}
		}
		c.quiet(50 * time.Millisecond)
	}
}

func TestWSMessageFrameFields(t *testing.T) {
	e := newWSEnv(t, Config{})
	host := e.dial("fields", "host@x.org", "")
	host.expect(wire.TypeWelcome)
	host.send("c-1", "hi")
	var msg, ack wsFrame
	for msg.Type == "" || ack.Type == "" {
		f := host.next()
		switch f.Type {
		case wire.TypeMessage:
			msg = f
		case wire.TypeAck:
			ack = f
		}
	}
	var keys map[string]any
	_ = json.Unmarshal([]byte(msg.raw), &keys)
	want := []string{"at", "from", "id", "kind", "seq", "text", "to", "type"}
	if got := slices.Sorted(mapKeys(keys)); !slices.Equal(got, want) {
		t.Fatalf("message fields %v, want %v", got, want)
	}
	if msg.To != "" || msg.ID != "c-1" || msg.Seq != 1 {
		t.Fatalf("message %s", msg.raw)
	}
	if ack.raw != `{"type":"ack","id":"c-1","seq":1}` {
		t.Fatalf("ack %s", ack.raw)
	}
}

func TestWSResendIsDeduplicated(t *testing.T) {
	e := newWSEnv(t, Config{})
	host, guest, _ := e.enterBoth("dedupe")
	host.send("same", "once")
	host.send("same", "once")
	host.send("next", "twice")
	var acks []wsFrame
	for len(acks) < 3 {
		if f := host.next(); f.Type == wire.TypeAck {
			acks = append(acks, f)
		}
	}
	if acks[0].Seq != 1 || acks[1].Seq != 1 || acks[1].ID != "same" || acks[2].Seq != 2 {
		t.Fatalf("acks %+v", acks)
	}
	msgs := guest.messages(2)
	checkSeqs(t, "guest", msgs, 1)
	guest.quiet(50 * time.Millisecond)

	// Another person's id is not theirs to resend: refused, nothing stored.
	guest.send("same", "mine")
	if f := guest.skipTo(wire.TypeError); f.Code != "invalid_frame" || f.ID != "same" {
		t.Fatalf("guest reusing the host's id: %s", f.raw)
	}
}

func TestWSRoomFull(t *testing.T) {
	e := newWSEnv(t, Config{})
	e.enterBoth("full")
	third := e.dial("full", "third@x.org", "")
	f := third.expect(wire.TypeError)
	if f.Code != "room_full" || f.Message == "" {
		t.Fatalf("third got %s", f.raw)
	}
	if code := third.closed(); code != websocket.StatusCode(StatusRoomFull) {
		t.Fatalf("close status %d, want 4003", code)
	}
	// The same people can still connect from another tab.
	again := e.dial("full", "guest@x.org", "")
	again.expect(wire.TypeWelcome)
}

func TestWSReconnectReplaysMissing(t *testing.T) {
	e := newWSEnv(t, Config{})
	host := e.dial("replay", "host@x.org", "")
	host.expect(wire.TypeWelcome)
	for i := range 10 {
		host.send(fmt.Sprintf("c-%d", i), "m")
	}
	host.messages(10)
	tests := []struct {
		name  string
		after string
		from  int64 // first replayed seq; every test adds one live message
	}{
		{"All", "", 1},
		{"AfterFour", "4", 5},
		{"AfterAll", "11", 12},
		{"AfterTooFar", "99", 14}, // clamped to last_seq: nothing later is skipped
	}
	last := int64(10)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			query := ""
			if tt.after != "" {
				query = "after=" + tt.after
			}
			c := e.dial("replay", "guest@x.org", query)
			if w := c.expect(wire.TypeWelcome); w.LastSeq != last {
				t.Fatalf("last_seq %d, want %d", w.LastSeq, last)
			}
			if n := last - tt.from + 1; n > 0 {
				checkSeqs(t, "replay", c.messages(int(n)), tt.from)
			}
			host.send("live-"+tt.name, "live")
			last++
			if live := c.messages(1); live[0].ID != "live-"+tt.name || live[0].Seq != last {
				t.Fatalf("live message %s", live[0].raw)
			}
			c.ws.Close(websocket.StatusNormalClosure, "")
			host.messages(1)
		})
	}
}

func TestWSReplayDuringTraffic(t *testing.T) {
	e := newWSEnv(t, Config{RatePerSec: 10000, RateBurst: 10000, SendQueue: 2048}) // a flood: no slow-client drops here
	host := e.dial("busy", "host@x.org", "")
	host.expect(wire.TypeWelcome)
	for i := range 300 {
		host.send(fmt.Sprintf("a-%d", i), "before")
	}
	host.messages(300)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 200 {
			b, _ := json.Marshal(map[string]string{"type": "send", "id": fmt.Sprintf("b-%d", i), "text": "during"})
			_ = host.ws.Write(context.Background(), websocket.MessageText, b)
		}
	}()
	guest := e.dial("busy", "guest@x.org", "after=17")
	guest.expect(wire.TypeWelcome)
	<-done
	checkSeqs(t, "guest", guest.messages(500-17), 18)
	guest.quiet(50 * time.Millisecond)
}

func TestWSBadFrames(t *testing.T) {
	e := newWSEnv(t, Config{MaxText: 10})
	host, guest, _ := e.enterBoth("bad")
	tests := []struct {
		name  string
		frame string
		code  string
	}{
		{"Garbage", `{not json`, "invalid_frame"},
		{"NotAnObject", `[1,2]`, "invalid_frame"},
		{"NoType", `{"id":"x"}`, "invalid_frame"},
		{"UnknownType", `{"type":"dance"}`, "invalid_frame"},
		{"WrongFieldType", `{"type":"send","id":5,"text":"x"}`, "invalid_frame"},
		{"MissingID", `{"type":"send","text":"hi"}`, "invalid_frame"},
		{"IDTooLong", `{"type":"send","id":"` + strings.Repeat("x", 65) + `","text":"hi"}`, "invalid_frame"},
		{"TooLong", `{"type":"send","id":"t","text":"12345678901"}`, "too_long"},
		{"Empty", `{"type":"send","id":"e","text":" \n\t"}`, "empty"},
		{"ByeWithoutID", `{"type":"bye"}`, "invalid_frame"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			host.sendJSON(tt.frame)
			if f := host.expect(wire.TypeError); f.Code != tt.code || f.Message == "" {
				t.Fatalf("got %s, want code %s", f.raw, tt.code)
			}
		})
	}
	// Multi-byte characters count as one each: ten of them fit.
	host.send("ok-runes", strings.Repeat("é", 10))
	host.sendJSON(`{"type":"bye","id":"bye-1"}`)
	msgs := guest.messages(2)
	checkSeqs(t, "guest", msgs, 1)
	if msgs[1].Kind != "bye" || msgs[1].Text != "Bye! I am leaving the chat now." {
		t.Fatalf("bye message %s", msgs[1].raw)
	}
	guest.quiet(50 * time.Millisecond) // no error frames reached the other person
	if err := host.ws.Write(context.Background(), websocket.MessageBinary, []byte("{}")); err != nil {
		t.Fatal(err)
	}
	host.skipTo(wire.TypeAck)
	host.skipTo(wire.TypeAck)
	if f := host.skipTo(wire.TypeError); f.Code != "invalid_frame" {
		t.Fatalf("binary frame: %s", f.raw)
	}
}

func TestWSFrameTooBigCloses1009(t *testing.T) {
	e := newWSEnv(t, Config{ReadLimit: 1024})
	host, guest, _ := e.enterBoth("big")
	host.send("big", strings.Repeat("x", 2000))
	if code := host.closed(); code != websocket.StatusMessageTooBig {
		t.Fatalf("close status %d, want 1009", code)
	}
	guest.presence("host@x.org", false)
}

func TestWSRateLimited(t *testing.T) {
	e := newWSEnv(t, Config{RatePerSec: 0.001, RateBurst: 2})
	host := e.dial("rate", "host@x.org", "")
	host.expect(wire.TypeWelcome)
	for i := range 3 {
		host.send(fmt.Sprintf("r-%d", i), "x")
	}
	if f := host.skipTo(wire.TypeError); f.Code != "rate_limited" || f.ID != "r-2" || f.RetryAfterMS < 900_000 {
		t.Fatalf("got %s, want rate_limited with retry_after_ms of about 1000 s", f.raw)
	}
}

func TestWSSlowReaderIsClosed(t *testing.T) {
	e := newWSEnv(t, Config{SendQueue: 8, RatePerSec: 1e6, RateBurst: 1e6, MaxText: 100_000, ReadLimit: 256 << 10})
	host, guest, _ := e.enterBoth("slow")
	// A second guest tab stops reading: its TCP buffers fill, then its queue, and it is
	// closed, while the host and the reading tab keep chatting.
	slow, _, err := e.dialRaw("slow", "", http.Header{"Cookie": {e.cookie("guest@x.org")}, "Origin": {e.cfg.PublicURL}})
	if err != nil {
		t.Fatal(err)
	}
	defer slow.CloseNow()
	waitUntil(t, "the slow tab to be served", func() bool { return e.openConns() == 3 })
	text := strings.Repeat("x", 20_000) // large frames fill the TCP buffers sooner
	deadline := time.Now().Add(20 * time.Second)
	sent := 0
	for e.openConns() > 2 {
		if time.Now().After(deadline) {
			t.Fatalf("slow reader still connected after %d messages", sent)
		}
		sent++
		host.send(fmt.Sprintf("s-%d", sent), text)
		for _, c := range []*wsClient{host, guest} { // both keep up; only the slow tab falls behind
			if m := c.messages(1); m[0].Seq != int64(sent) {
				t.Fatalf("got seq %d, want %d", m[0].Seq, sent)
			}
		}
	}
	t.Logf("slow reader closed after %d messages", sent)
	for i := 0; i < 5; i++ {
		sent++
		host.send(fmt.Sprintf("s-%d", sent), "still here")
		checkSeqs(t, "guest", guest.messages(1), int64(sent))
		checkSeqs(t, "host", host.messages(1), int64(sent))
	}
}

// waitUntil polls cond until it holds, for 5 s at most.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testenv.Eventually(t, 5*time.Second, cond, what)
}

func (e *wsEnv) openConns() int {
	e.srv.connMu.Lock()
	defer e.srv.connMu.Unlock()
	return len(e.srv.conns)
}

func TestWSIdleConnectionClosed(t *testing.T) {
	// An idle timeout of 0.5 s: shorter ones close even reading clients on a loaded machine.
	e := newWSEnv(t, Config{PingInterval: 50 * time.Millisecond, IdleTimeout: 500 * time.Millisecond})
	live := e.dial("idle", "host@x.org", "") // reads, so it answers pings
	live.expect(wire.TypeWelcome)
	silent, _, err := e.dialRaw("idle", "", http.Header{"Cookie": {e.cookie("guest@x.org")}})
	if err != nil {
		t.Fatal(err)
	}
	defer silent.CloseNow()
	waitUntil(t, "the silent connection to be served", func() bool { return e.openConns() == 2 })
	deadline := time.Now().Add(5 * time.Second)
	for e.openConns() > 1 {
		if time.Now().After(deadline) {
			t.Fatal("a connection that never answers pings was not closed")
		}
		time.Sleep(5 * time.Millisecond)
	}
	// Well past IdleTimeout, the live connection is still open: it answers pings.
	for end := time.After(800 * time.Millisecond); ; {
		select {
		case f, ok := <-live.frames:
			if !ok || f.Type != wire.TypePresence {
				t.Fatalf("live connection: %s (%v)", f.raw, live.err)
			}
			continue
		case <-end:
		}
		break
	}
	if n := e.openConns(); n != 1 {
		t.Fatalf("%d connections open, want the live one", n)
	}
}

func TestWSRefusedBeforeUpgrade(t *testing.T) {
	e := newWSEnv(t, Config{AllowedOrigins: []string{"https://*.friend.example"}})
	forged := cookieName + "=" + resign(strings.TrimPrefix(e.cookie("a@x.org"), cookieName+"="), []byte("another key"))
	tests := []struct {
		name   string
		room   string
		header http.Header
		status int
	}{
		{"NoCookie", "r", http.Header{"Origin": {e.cfg.PublicURL}}, http.StatusUnauthorized},
		{"ForgedCookie", "r", http.Header{"Cookie": {forged}}, http.StatusUnauthorized},
		{"OtherOrigin", "r", http.Header{"Cookie": {e.cookie("a@x.org")}, "Origin": {"http://evil.example"}}, http.StatusForbidden},
		{"OtherScheme", "r", http.Header{"Cookie": {e.cookie("a@x.org")}, "Origin": {strings.Replace(e.cfg.PublicURL, "http", "https", 1)}}, http.StatusForbidden},
		{"BadRoom", "bad.room", http.Header{"Cookie": {e.cookie("a@x.org")}}, http.StatusBadRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ws, resp, err := e.dialRaw(tt.room, "", tt.header)
			if err == nil {
				ws.CloseNow()
				t.Fatal("dial succeeded")
			}
			if resp == nil || resp.StatusCode != tt.status {
				t.Fatalf("response %v, want %d", resp, tt.status)
			}
		})
	}
	t.Run("AllowedOrigin", func(t *testing.T) {
		ws, _, err := e.dialRaw("r", "", http.Header{"Cookie": {e.cookie("a@x.org")}, "Origin": {"https://app.friend.example"}})
		if err != nil {
			t.Fatal(err)
		}
		ws.CloseNow()
	})
	t.Run("BadAfter", func(t *testing.T) {
		_, resp, _ := e.dialRaw("r", "after=-1", http.Header{"Cookie": {e.cookie("a@x.org")}})
		if resp == nil || resp.StatusCode != http.StatusBadRequest {
			t.Fatalf("response %v", resp)
		}
	})
}

func TestWSEnd(t *testing.T) {
	e := newWSEnv(t, Config{})
	host, guest, session := e.enterBoth("end")
	host.send("c-1", "before the end")
	guest.messages(1)
	// Both end at once: exactly one wins and one export is enqueued.
	host.sendJSON(`{"type":"end"}`)
	guest.sendJSON(`{"type":"end"}`)
	for name, c := range map[string]*wsClient{"host": host, "guest": guest} {
		f := c.skipTo(wire.TypeEnded)
		if f.By != "host@x.org" && f.By != "guest@x.org" {
			t.Fatalf("%s: ended %s", name, f.raw)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for len(e.queue.enqueued()) == 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond) // let a wrong second enqueue show
	if got := e.queue.enqueued(); len(got) != 1 || got[0] != session {
		t.Fatalf("enqueued %v, want [%s]", got, session)
	}
	host.send("c-2", "after the end")
	if f := host.skipTo(wire.TypeError); f.Code != "chat_ended" || f.ID != "c-2" {
		t.Fatalf("send after end: %s", f.raw)
	}
	host.sendJSON(`{"type":"bye","id":"c-3"}`)
	if f := host.skipTo(wire.TypeError); f.Code != "chat_ended" {
		t.Fatalf("bye after end: %s", f.raw)
	}

	t.Run("ReattachToEndedSession", func(t *testing.T) {
		c := e.visit("end", "guest@x.org", "session="+session+"&after=0")
		w := c.expect(wire.TypeWelcome)
		if w.Session != session || w.Status != "ending" || w.Role != "participant" {
			t.Fatalf("welcome %s", w.raw)
		}
		checkSeqs(t, "reattach", c.messages(1), 1)
		c.skipTo(wire.TypeEnded)
	})
	t.Run("SessionOfAnotherRoomIgnored", func(t *testing.T) {
		c := e.dial("elsewhere", "guest@x.org", "session="+session)
		if w := c.expect(wire.TypeWelcome); w.Session == session || w.Room != "elsewhere" {
			t.Fatalf("welcome %s", w.raw)
		}
	})
	t.Run("NewChatInTheRoom", func(t *testing.T) {
		c := e.dial("end", "third@x.org", "session="+session)
		w := c.expect(wire.TypeWelcome)
		if w.Session == session || w.Role != "host" || w.Status != "inprogress" {
			t.Fatalf("welcome %s", w.raw)
		}
		c.send("n-1", "new chat")
		c.messages(1)
		// A reconnect naming the old session with its after gets the new chat whole.
		again := e.dial("end", "third@x.org", "session="+session+"&after=7")
		if w2 := again.expect(wire.TypeWelcome); w2.Session != w.Session {
			t.Fatalf("welcome %s", w2.raw)
		}
		checkSeqs(t, "new chat", again.messages(1), 1)
	})
}

func TestWSRestartLosesNoAckedMessage(t *testing.T) {
	e := newWSEnv(t, Config{RatePerSec: 1e6, RateBurst: 1e6})
	host := e.dial("restart", "host@x.org", "")
	w := host.expect(wire.TypeWelcome)
	const n = 50
	for i := range n {
		host.send(fmt.Sprintf("c-%d", i), "keep me")
	}
	acked := 0
	for acked < n {
		if host.next().Type == wire.TypeAck {
			acked++
		}
	}
	e.stop()
	if code := host.closed(); code != websocket.StatusGoingAway {
		t.Fatalf("close status on shutdown %d, want 1001", code)
	}
	e.start()
	again := e.dial("restart", "host@x.org", "session="+w.Session)
	if w2 := again.expect(wire.TypeWelcome); w2.Session != w.Session || w2.LastSeq != n {
		t.Fatalf("welcome after restart %s", w2.raw)
	}
	checkSeqs(t, "after restart", again.messages(n), 1)
}

func TestWSShutdownRefusesNewConnections(t *testing.T) {
	e := newWSEnv(t, Config{})
	c := e.dial("bye", "host@x.org", "")
	c.expect(wire.TypeWelcome)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := e.srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if code := c.closed(); code != websocket.StatusGoingAway {
		t.Fatalf("close status %d, want 1001", code)
	}
	ws, _, err := e.dialRaw("bye", "", http.Header{"Cookie": {e.cookie("host@x.org")}})
	if err == nil {
		cl := newWSClient(t, ws)
		if code := cl.closed(); code != websocket.StatusGoingAway {
			t.Fatalf("new connection after shutdown: status %d", code)
		}
	}
}
