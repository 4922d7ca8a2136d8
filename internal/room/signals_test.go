package room

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"parley/internal/chat"
	"parley/internal/hub"
	"parley/internal/membus"
	"parley/internal/wire"
)

func frame(typ string, seq int64) []byte { return fmt.Appendf(nil, `{"type":%q,"seq":%d}`, typ, seq) }

var typingFrame = []byte(`{"type":"typing"}`)

// TestTypingReachesOnlyThePeer: typing goes to every connection of the other person
// and to none of the typist's own (another tab of theirs included).
func TestTypingReachesOnlyThePeer(t *testing.T) {
	e := newEnv(t, Options{}, hub.Options{})
	host, ht, _ := e.enter(t, "typing", "host@x.org")
	_, ht2, _ := e.enter(t, "typing", "host@x.org")
	_, gt, _ := e.enter(t, "typing", "guest@x.org")
	_, gt2, _ := e.enter(t, "typing", "guest@x.org")
	host.HandleFrame(typingFrame)
	for _, tr := range []*transport{gt, gt2} {
		if f := tr.wait(t, "typing", isType(wire.TypeTyping)); f.From != "host@x.org" {
			t.Fatalf("typing %+v", f)
		}
	}
	// One broadcast put it on every connection at once: the typist's are checked now.
	for _, tr := range []*transport{ht, ht2} {
		if n := tr.count(wire.TypeTyping); n != 0 {
			t.Fatalf("the typist's own connection got %d typing frames", n)
		}
	}
}

// TestTypingRateBounded: a burst of typing frames reaches the peer once per
// TypingEvery; the extras are dropped without an error or a store write.
func TestTypingRateBounded(t *testing.T) {
	e := newEnv(t, Options{}, hub.Options{})
	host, ht, _ := e.enter(t, "typing-burst", "host@x.org")
	_, gt, _ := e.enter(t, "typing-burst", "guest@x.org")
	for range 200 {
		host.HandleFrame(typingFrame)
	}
	gt.wait(t, "typing", isType(wire.TypeTyping))
	if n := gt.count(wire.TypeTyping); n != 1 {
		t.Fatalf("200 typing frames within a second reached the peer %d times, want 1", n)
	}
	host.typingAt = host.typingAt.Add(-TypingEvery) // a second later
	host.HandleFrame(typingFrame)
	waitCount(t, gt, wire.TypeTyping, 2)
	if n := ht.count(wire.TypeError); n != 0 {
		t.Fatalf("typing got %d error frames", n)
	}
	if last, _ := e.store.LastSeq(context.Background(), host.Session().ID); last != 0 {
		t.Fatalf("typing changed the last seq to %d", last)
	}
}

// countingReceipts counts the cursor writes that reach the store.
type countingReceipts struct {
	chat.Receipts
	writes atomic.Int32
}

func (r *countingReceipts) AdvanceCursor(ctx context.Context, s, email string, c chat.Cursor) (chat.Cursor, error) {
	r.writes.Add(1)
	return r.Receipts.AdvanceCursor(ctx, s, email, c)
}

// chatOfThree enters host and guest and stores three messages from the host, seen by
// the guest.
func chatOfThree(t *testing.T, e *env, room string) (host, guest *Client, ht, gt *transport) {
	host, ht, _ = e.enter(t, room, "host@x.org")
	guest, gt = e.enterOnce(t, room, "guest@x.org")
	for i := 1; i <= 3; i++ {
		host.HandleFrame(sendFrame(fmt.Sprintf("c-%d", i), "hello"))
	}
	waitCount(t, gt, wire.TypeMessage, 3)
	return host, guest, ht, gt
}

// enterOnce is env.enter for a client the test may Leave itself: the cleanup leaves
// only if the test did not.
func (e *env) enterOnce(tb testing.TB, room, email string) (*Client, *transport) {
	tb.Helper()
	e.join(tb, room, email)
	ctx, cancel := context.WithCancel(context.Background())
	tr := newTransport()
	c, err := e.rooms.Enter(ctx, tr, Request{Email: email, Room: room})
	if err != nil {
		cancel()
		tb.Fatalf("%s entering %s: %v", email, room, err)
	}
	tb.Cleanup(func() {
		cancel()
		if !c.cursor.closed {
			c.Leave()
		}
	})
	return c, tr
}

func isReceipt(by string, received, read int64) func(wire.Frame) bool {
	return func(f wire.Frame) bool {
		return f.Type == wire.TypeReceipt && f.By == by && f.Received == received && f.Read == read
	}
}

func cursorOf(t *testing.T, e *env, session, email string) chat.Cursor {
	t.Helper()
	all, err := e.store.Cursors(context.Background(), session)
	if err != nil {
		t.Fatal(err)
	}
	return all[email]
}

// TestReceiptsStoredMonotonicAndTold: a read is stored (raising received), told to
// every connection of the chat, and a lower value afterwards changes nothing.
func TestReceiptsStoredMonotonicAndTold(t *testing.T) {
	e := newEnv(t, Options{}, hub.Options{})
	host, guest, ht, gt := chatOfThree(t, e, "receipts")
	id := host.Session().ID
	guest.HandleFrame(frame(wire.TypeRead, 2))
	ht.wait(t, "the guest's receipt at the host", isReceipt("guest@x.org", 2, 2))
	gt.wait(t, "the guest's receipt at the guest", isReceipt("guest@x.org", 2, 2))
	if c := cursorOf(t, e, id, "guest@x.org"); c != (chat.Cursor{Received: 2, Read: 2}) {
		t.Fatalf("stored %+v, want received 2 read 2", c)
	}
	guest.HandleFrame(frame(wire.TypeReceived, 1)) // lower: ignored
	guest.HandleFrame(frame(wire.TypeRead, 1))
	guest.HandleFrame(frame(wire.TypeReceived, 3))
	ht.wait(t, "received 3", isReceipt("guest@x.org", 3, 2))
	if c := cursorOf(t, e, id, "guest@x.org"); c != (chat.Cursor{Received: 3, Read: 2}) {
		t.Fatalf("stored %+v, want received 3 read 2", c)
	}
	if n := gt.count(wire.TypeError); n != 0 {
		t.Fatalf("%d error frames for lower receipts", n)
	}
	if last, _ := e.store.LastSeq(context.Background(), id); last != 3 {
		t.Fatalf("receipts changed the last seq to %d", last)
	}
}

// TestReceiptBeyondLastSeqRefused: a cursor beyond the chat's last message, or below
// zero, is refused with invalid_frame and stores nothing.
func TestReceiptBeyondLastSeqRefused(t *testing.T) {
	e := newEnv(t, Options{}, hub.Options{})
	host, guest, _, gt := chatOfThree(t, e, "beyond")
	guest.HandleFrame(frame(wire.TypeRead, 4))
	guest.HandleFrame(frame(wire.TypeReceived, -1))
	waitCount(t, gt, wire.TypeError, 2)
	for _, f := range gt.all() {
		if f.Type == wire.TypeError && f.Code != chat.EInvalidFrame {
			t.Fatalf("refusal %+v, want invalid_frame", f)
		}
	}
	guest.Leave()
	if c := cursorOf(t, e, host.Session().ID, "guest@x.org"); c != (chat.Cursor{}) {
		t.Fatalf("stored %+v for refused receipts", c)
	}
}

// TestReceiptsCoalesced: a burst of receipts costs at most two store writes (the
// first at once, the latest a second later), and what is pending when the
// connection leaves is written then.
func TestReceiptsCoalesced(t *testing.T) {
	counter := &countingReceipts{}
	e := newEnv(t, Options{Receipts: counter}, hub.Options{})
	counter.Receipts = e.store
	host, guest, ht, gt := chatOfThree(t, e, "coalesce")
	for _, seq := range []int64{1, 2, 3, 1, 2, 3} {
		guest.HandleFrame(frame(wire.TypeReceived, seq))
		guest.HandleFrame(frame(wire.TypeRead, seq))
	}
	ht.wait(t, "the latest receipt", isReceipt("guest@x.org", 3, 3))
	if n := counter.writes.Load(); n > 2 {
		t.Fatalf("%d store writes for a burst of 12 receipts, want at most 2", n)
	}

	// Pending at leave: written by Leave, not lost.
	host.HandleFrame(sendFrame("c-4", "one more"))
	waitCount(t, gt, wire.TypeMessage, 4)
	guest.HandleFrame(frame(wire.TypeRead, 4)) // within a second of the last write: scheduled
	guest.Leave()
	if c := cursorOf(t, e, host.Session().ID, "guest@x.org"); c != (chat.Cursor{Received: 4, Read: 4}) {
		t.Fatalf("after leaving, stored %+v, want read 4", c)
	}
}

// TestWelcomeCarriesReceipts: a connection's welcome has each person's cursors, 0 for
// a person without any.
func TestWelcomeCarriesReceipts(t *testing.T) {
	e := newEnv(t, Options{}, hub.Options{})
	_, guest, _, _ := chatOfThree(t, e, "welcome-receipts")
	guest.HandleFrame(frame(wire.TypeRead, 3))
	guest.Leave()
	_, tr, _ := e.enter(t, "welcome-receipts", "host@x.org")
	w := tr.wait(t, "the welcome", isType(wire.TypeWelcome))
	if w.Receipts["guest@x.org"] != (wire.Cursor{Received: 3, Read: 3}) {
		t.Fatalf("welcome receipts %+v, want the guest at 3", w.Receipts)
	}
	if c, ok := w.Receipts["host@x.org"]; !ok || c != (wire.Cursor{}) {
		t.Fatalf("welcome receipts %+v, want the host at 0", w.Receipts)
	}
}

// TestRevisitShowsTheEndedChat: connecting after the chat ended gets that chat, ended,
// with its messages; only a join starts a new one. Connecting where the person has no
// chat starts nothing: no_chat.
func TestRevisitShowsTheEndedChat(t *testing.T) {
	e := newEnv(t, Options{}, hub.Options{})
	host, _, _, _ := chatOfThree(t, e, "revisit")
	old := host.Session().ID
	host.HandleFrame([]byte(`{"type":"end"}`))

	tr := newTransport()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c, err := e.rooms.Enter(ctx, tr, Request{Email: "guest@x.org", Room: "revisit"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Leave()
	w := tr.wait(t, "the welcome", isType(wire.TypeWelcome))
	if w.Session != old || w.Status == string(chat.StatusInProgress) || w.LastSeq != 3 {
		t.Fatalf("revisit welcome %+v, want the ended chat %s", w, old)
	}
	tr.wait(t, "the ended frame", isType(wire.TypeEnded))
	if n := tr.count(wire.TypeMessage); n != 3 {
		t.Fatalf("revisit replayed %d messages, want 3", n)
	}
	if _, err := e.store.InProgress(ctx, "revisit"); !chat.IsCode(err, chat.ENotFound) {
		t.Fatalf("a visit started a chat: %v", err)
	}

	e.join(t, "revisit", "guest@x.org") // POST /join: a new chat here
	_, nt, _ := e.enter(t, "revisit", "guest@x.org")
	w = nt.wait(t, "the welcome", isType(wire.TypeWelcome))
	if w.Session == old || w.Status != string(chat.StatusInProgress) || w.Role != string(chat.RoleHost) || w.LastSeq != 0 {
		t.Fatalf("after a join, welcome %+v, want a new chat in progress", w)
	}

	nobody := newTransport()
	if _, err := e.rooms.Enter(ctx, nobody, Request{Email: "new@x.org", Room: "empty-room"}); !chat.IsCode(err, chat.ENoChat) {
		t.Fatalf("Enter without a chat: %v, want no_chat", err)
	}
	if f := nobody.wait(t, "the refusal", isType(wire.TypeError)); f.Code != chat.ENoChat {
		t.Fatalf("refusal %+v", f)
	}
	if code := nobody.closeCode(); code != wire.CloseNormal {
		t.Fatalf("closed with %d, want 1000", code)
	}
	if _, err := e.store.InProgress(ctx, "empty-room"); !chat.IsCode(err, chat.ENotFound) {
		t.Fatalf("a connection started a chat: %v", err)
	}
}

// BenchmarkSignals is the cost of the signals a browser sends most: typing within the
// rate bound (dropped) and a receipt the connection was given (coalesced, no store).
func BenchmarkSignals(b *testing.B) {
	e := newEnv(b, Options{}, hub.Options{})
	host, _, _ := e.enter(b, "bench-signals", "host@x.org")
	guest, gt, _ := e.enter(b, "bench-signals", "guest@x.org")
	host.HandleFrame(sendFrame("c-1", "hello"))
	waitCount(b, gt, wire.TypeMessage, 1)
	b.Run("TypingDropped", func(b *testing.B) {
		host.HandleFrame(typingFrame)
		b.ReportAllocs()
		for b.Loop() {
			host.HandleFrame(typingFrame)
		}
	})
	b.Run("ReceivedCoalesced", func(b *testing.B) {
		f := frame(wire.TypeReceived, 1)
		b.ReportAllocs()
		for b.Loop() {
			guest.HandleFrame(f)
		}
	})
}

// TestSignalsLocalFirstOnce: typing and receipts reach this replica's connections
// without the broker, so a hung broker does not hold them back; over a broker between
// replicas, their copy coming back is not told a second time.
func TestSignalsLocalFirstOnce(t *testing.T) {
	t.Run("broker hung", func(t *testing.T) {
		e := newEnv(t, Options{}, hub.Options{Broker: hungBroker{bus: membus.New()}, PublishTimeout: 200 * time.Millisecond})
		host, _, _ := e.enter(t, "typing-hung", "host@x.org")
		_, gt, _ := e.enter(t, "typing-hung", "guest@x.org")
		host.HandleFrame(typingFrame)
		gt.wait(t, "typing while the broker hangs", isType(wire.TypeTyping))
	})
	t.Run("receipt, broker hung", func(t *testing.T) {
		e := newEnv(t, Options{}, hub.Options{Broker: hungBroker{bus: membus.New()}, PublishTimeout: 200 * time.Millisecond})
		_, guest, ht, _ := chatOfThree(t, e, "receipt-hung")
		guest.HandleFrame(frame(wire.TypeRead, 3))
		ht.wait(t, "the receipt while the broker hangs", isReceipt("guest@x.org", 3, 3))
	})
	t.Run("echo dropped", func(t *testing.T) {
		e := newEnv(t, Options{}, hub.Options{Broker: replicaBroker{membus.New()}})
		host, _, _ := e.enter(t, "typing-echo", "host@x.org")
		guest, gt, _ := e.enter(t, "typing-echo", "guest@x.org")
		host.HandleFrame(typingFrame)
		gt.wait(t, "typing", isType(wire.TypeTyping))
		// Published after the typing: once it is here, the typing's copy came back too.
		e.hub.Publish(chat.Event{Type: chat.EventTranscript, Session: host.Session().ID, Frame: wire.Transcript("/transcripts/x")})
		gt.wait(t, "the sentinel", isType(wire.TypeTranscript))
		if n := gt.count(wire.TypeTyping); n != 1 {
			t.Fatalf("the peer got %d typing frames for one, want 1", n)
		}
		host.HandleFrame(sendFrame("c-1", "hello"))
		waitCount(t, gt, wire.TypeMessage, 1)
		guest.HandleFrame(frame(wire.TypeRead, 1))
		ht := host.t.(*transport)
		ht.wait(t, "the receipt", isReceipt("guest@x.org", 1, 1))
		// A second sentinel after the receipt, which a session tells every time.
		e.hub.Publish(chat.Event{Type: chat.EventPresence, Session: host.Session().ID, Email: "sentinel@x.org",
			Online: true, Frame: wire.Presence("sentinel@x.org", true)})
		ht.wait(t, "the second sentinel", func(f wire.Frame) bool { return f.Type == wire.TypePresence && f.Email == "sentinel@x.org" })
		n := 0
		for _, f := range ht.all() {
			if isReceipt("guest@x.org", 1, 1)(f) {
				n++
			}
		}
		if n != 1 {
			t.Fatalf("the host got %d receipt frames for one, want 1", n)
		}
	})
}
