package room

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"parley/internal/chat"
	"parley/internal/hub"
	"parley/internal/membus"
	"parley/internal/sqlstore"
	"parley/internal/testenv"
	"parley/internal/wire"
)

// transport is a connection without a socket: it records every frame the chat layer
// sends, replies or writes, in order, and how it was closed.
type transport struct {
	mu     sync.Mutex
	frames []wire.Frame
	replay int // frames written outside the queue (welcome, replay)
	closed int // close code, 0 while open
	added  chan struct{}
}

func newTransport() *transport { return &transport{added: make(chan struct{}, 1)} }

func (t *transport) add(frame []byte) bool {
	var f wire.Frame
	if err := json.Unmarshal(frame, &f); err != nil {
		panic(err)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed != 0 {
		return false
	}
	t.frames = append(t.frames, f)
	select {
	case t.added <- struct{}{}:
	default:
	}
	return true
}

func (t *transport) Send(frame []byte) bool  { return t.add(frame) }
func (t *transport) Reply(frame []byte) bool { return t.add(frame) }
func (t *transport) Hold()                   {}
func (t *transport) Release()                {}
func (t *transport) Write(frame []byte) error {
	if !t.add(frame) {
		return errors.New("closed")
	}
	t.mu.Lock()
	t.replay++
	t.mu.Unlock()
	return nil
}
func (t *transport) Close(code int, reason string) {
	t.mu.Lock()
	if t.closed == 0 {
		t.closed = code
	}
	t.mu.Unlock()
}

// wait waits until some frame satisfies ok and returns it.
func (t *transport) wait(tb testing.TB, what string, ok func(wire.Frame) bool) wire.Frame {
	tb.Helper()
	deadline := time.After(5 * time.Second)
	for {
		t.mu.Lock()
		for _, f := range t.frames {
			if ok(f) {
				t.mu.Unlock()
				return f
			}
		}
		t.mu.Unlock()
		select {
		case <-t.added:
		case <-time.After(5 * time.Millisecond):
		case <-deadline:
			tb.Fatalf("timed out waiting for %s; have %+v", what, t.all())
		}
	}
}

func (t *transport) all() []wire.Frame {
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]wire.Frame(nil), t.frames...)
}

func (t *transport) count(typ string) int {
	n := 0
	for _, f := range t.all() {
		if f.Type == typ {
			n++
		}
	}
	return n
}

func (t *transport) closeCode() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.closed
}

// env is the chat layer on SQLite and the in-process bus, without a server.
type env struct {
	store *sqlstore.DB
	hub   *hub.Hub
	rooms *Rooms
	o     Options
}

func newEnv(t testing.TB, o Options, ho hub.Options) *env {
	t.Helper()
	store, err := sqlstore.OpenSQLite(context.Background(), filepath.Join(t.TempDir(), "parley.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	bus := membus.New()
	if ho.Broker == nil {
		ho.Broker = bus
	}
	if ho.Presence == nil && o.Presence == nil {
		p := membus.NewPresence()
		ho.Presence, o.Presence = p, p
	}
	ho.Messages = store
	h := hub.New(ho)
	if o.Messages == nil {
		o.Messages = store
	}
	o.Sessions, o.Hub = store, h
	if o.Receipts == nil {
		o.Receipts = store
	}
	e := &env{store: store, hub: h, rooms: New(o), o: o}
	t.Cleanup(func() { h.Close(); bus.Close(); store.Close() })
	return e
}

// enter connects email to room and waits for the welcome.
func (e *env) enter(tb testing.TB, room, email string) (*Client, *transport, context.CancelFunc) {
	tb.Helper()
	e.join(tb, room, email)
	ctx, cancel := context.WithCancel(context.Background())
	t := newTransport()
	c, err := e.rooms.Enter(ctx, t, Request{Email: email, Room: room})
	if err != nil {
		cancel()
		tb.Fatalf("%s entering %s: %v", email, room, err)
	}
	tb.Cleanup(func() { cancel(); c.Leave() })
	return c, t, cancel
}

// join is what POST /join does before the room page connects: enter the room's chat,
// or start one. A full room is left for the connection to find.
func (e *env) join(tb testing.TB, room, email string) {
	tb.Helper()
	if _, _, err := e.store.Enter(context.Background(), room, email, chat.Now()); err != nil && !chat.IsCode(err, chat.ERoomFull) {
		tb.Fatalf("%s joining %s: %v", email, room, err)
	}
}

func sendFrame(id, text string) []byte {
	return fmt.Appendf(nil, `{"type":"send","id":%q,"text":%q}`, id, text)
}

func isType(typ string) func(wire.Frame) bool {
	return func(f wire.Frame) bool { return f.Type == typ }
}

func TestSendAcksAndDeliversToBoth(t *testing.T) {
	e := newEnv(t, Options{}, hub.Options{})
	host, ht, _ := e.enter(t, "r1", "host@x.org")
	_, gt, _ := e.enter(t, "r1", "guest@x.org")
	host.HandleFrame(sendFrame("c-1", "hello"))
	ack := ht.wait(t, "the ack", isType(wire.TypeAck))
	if ack.ID != "c-1" || ack.Seq != 1 {
		t.Fatalf("ack %+v", ack)
	}
	for _, tr := range []*transport{ht, gt} {
		m := tr.wait(t, "the message", isType(wire.TypeMessage))
		if m.Text != "hello" || m.From != "host@x.org" || m.To != "guest@x.org" || m.Seq != 1 {
			t.Fatalf("message %+v", m)
		}
	}
	host.HandleFrame(sendFrame("c-1", "hello")) // a resend: same ack, nothing new
	waitCount(t, ht, wire.TypeAck, 2)
	if n := gt.count(wire.TypeMessage); n != 1 {
		t.Fatalf("guest got %d messages after a resend, want 1", n)
	}
}

func TestThirdPersonRefusedRoomFull(t *testing.T) {
	e := newEnv(t, Options{}, hub.Options{})
	e.enter(t, "full", "host@x.org")
	e.enter(t, "full", "guest@x.org")
	tr := newTransport()
	if _, err := e.rooms.Enter(context.Background(), tr, Request{Email: "third@x.org", Room: "full"}); !chat.IsCode(err, chat.ERoomFull) {
		t.Fatalf("Enter: %v, want room_full", err)
	}
	if f := tr.wait(t, "the refusal", isType(wire.TypeError)); f.Code != "room_full" {
		t.Fatalf("refusal %+v", f)
	}
	if code := tr.closeCode(); code != wire.CloseRoomFull {
		t.Fatalf("closed with %d, want 4003", code)
	}
}

// replicaBroker is the in-process bus seen as a broker between replicas (as Redis
// is): the hub does not take it for in-process, so events may be lost on the way.
type replicaBroker struct{ chat.Broker }

// endBlindMessages is a message store that does not say it refuses messages after
// the end (as DynamoDB's does not), and counts the Appends that reach it.
type endBlindMessages struct {
	chat.MessageStore
	appends atomic.Int64
}

func (m *endBlindMessages) Append(ctx context.Context, msg chat.Message) (chat.Message, bool, error) {
	m.appends.Add(1)
	return m.MessageStore.Append(ctx, msg)
}

// TestEndedEventLost: a chat ended without its ended event reaching this replica (a
// broker outage) still refuses sends: with a message store that cannot tell, the
// connection re-reads the session row once its copy is older than Recheck and refuses
// before storing; with one that refuses after the end itself (SQLite, MariaDB), the
// store refuses and no row is re-read. Either way the next send is refused at once.
func TestEndedEventLost(t *testing.T) {
	for _, blind := range []bool{true, false} {
		t.Run(fmt.Sprintf("blind=%v", blind), func(t *testing.T) {
			e := newEnv(t, Options{Recheck: 20 * time.Millisecond}, hub.Options{Broker: replicaBroker{membus.New()}})
			// Either way the appends are counted; the end-checked store is counted
			// after New, which saw the store itself.
			messages := &endBlindMessages{MessageStore: e.store}
			if blind {
				e.rooms = New(Options{Recheck: 20 * time.Millisecond, Messages: messages, Sessions: e.store,
					Hub: e.hub, Receipts: e.store, Presence: e.o.Presence})
			} else {
				e.rooms.o.Messages = messages
			}
			host, ht, _ := e.enter(t, "lost-end", "host@x.org")
			guest, gt, _ := e.enter(t, "lost-end", "guest@x.org")
			host.HandleFrame(sendFrame("c-1", "before the end")) // the copy of the row now has the guest
			waitCount(t, ht, wire.TypeAck, 1)
			if won, err := e.store.End(context.Background(), host.Session().ID, "guest@x.org", chat.Now()); err != nil || !won {
				t.Fatalf("End: %v %v", won, err)
			}
			counted := &countedSessions{SessionStore: e.store}
			e.rooms.o.Sessions = counted
			host.readAt = host.readAt.Add(-time.Second) // the client's copy of the row is stale now
			for _, id := range []string{"c-2", "c-3"} {
				host.HandleFrame(sendFrame(id, "after the end"))
				if f := ht.wait(t, "the refusal", func(f wire.Frame) bool { return f.Type == wire.TypeError && f.ID == id }); f.Code != "chat_ended" {
					t.Fatalf("send %s after an unannounced end: %+v", id, f)
				}
			}
			// The other person's connection knows too: the end is marked for the chat.
			guest.HandleFrame(sendFrame("g-1", "after the end"))
			if f := gt.wait(t, "the refusal", func(f wire.Frame) bool { return f.Type == wire.TypeError && f.ID == "g-1" }); f.Code != "chat_ended" {
				t.Fatalf("the other person's send after an unannounced end: %+v", f)
			}
			switch reads, appends := counted.reads.Load(), messages.appends.Load(); {
			case blind && (reads != 1 || appends != 1):
				t.Fatalf("blind store: %d row reads and %d appends, want 1 read (the recheck) and only the first append", reads, appends)
			case !blind && (reads != 0 || appends != 2):
				// c-1 and c-2 reach the store, which refuses c-2; c-3 and g-1 are refused
				// without it, the chat marked ended from the store's refusal.
				t.Fatalf("a store that refuses after the end: %d row reads and %d appends, want 0 and 2", reads, appends)
			}
		})
	}
}

// lostAnswer is a message store whose first Append of client id lose stores the
// message and then reports a failure, as when the store's answer is lost on the way.
type lostAnswer struct {
	chat.MessageStore
	lose string
	lost atomic.Bool
}

func (s *lostAnswer) Append(ctx context.Context, m chat.Message) (chat.Message, bool, error) {
	stored, dup, err := s.MessageStore.Append(ctx, m)
	if err == nil && m.ClientID == s.lose && !s.lost.Swap(true) {
		return chat.Message{}, false, chat.Errorf(chat.EUnavailable, "the answer was lost")
	}
	return stored, dup, err
}

// TestResendAfterLostAnswer: a message stored by an attempt whose answer was lost is
// delivered when the client resends it and gets the duplicate's ack: to the sender and
// to the other person, once, though no later message shows the gap.
func TestResendAfterLostAnswer(t *testing.T) {
	e := newEnv(t, Options{}, hub.Options{})
	e.rooms.o.Messages = &lostAnswer{MessageStore: e.store, lose: "c-1"}
	host, ht, _ := e.enter(t, "lost-answer", "host@x.org")
	_, gt, _ := e.enter(t, "lost-answer", "guest@x.org")
	host.HandleFrame(sendFrame("c-1", "hello"))
	ht.wait(t, "the refusal", func(f wire.Frame) bool { return f.Type == wire.TypeError && f.ID == "c-1" })
	host.HandleFrame(sendFrame("c-1", "hello")) // the client's resend
	ht.wait(t, "the ack", func(f wire.Frame) bool { return f.Type == wire.TypeAck && f.ID == "c-1" && f.Seq == 1 })
	ht.wait(t, "the sender's own message", func(f wire.Frame) bool { return f.Type == wire.TypeMessage && f.Seq == 1 })
	gt.wait(t, "the message at the other person", func(f wire.Frame) bool { return f.Type == wire.TypeMessage && f.Seq == 1 })
	host.HandleFrame(sendFrame("c-1", "hello")) // once more: nothing new anywhere
	host.HandleFrame(sendFrame("c-2", "next"))
	waitCount(t, gt, wire.TypeMessage, 2)
	waitCount(t, ht, wire.TypeMessage, 2)
	if n, m := gt.count(wire.TypeMessage), ht.count(wire.TypeMessage); n != 2 || m != 2 {
		t.Fatalf("message frames: %d at the other person, %d at the sender, want 2 and 2", n, m)
	}
}

// countedSessions counts reads of session rows.
type countedSessions struct {
	chat.SessionStore
	reads atomic.Int64
}

func (c *countedSessions) Session(ctx context.Context, id string) (*chat.Session, error) {
	c.reads.Add(1)
	return c.SessionStore.Session(ctx, id)
}

// TestInProcessSendsReadNoRow: with the in-process bus (one process, no event lost)
// a send never reads the session row once both people are in, however old the
// connection's copy is; an end by the other person is still refused at once.
func TestInProcessSendsReadNoRow(t *testing.T) {
	e := newEnv(t, Options{Recheck: time.Nanosecond}, hub.Options{})
	host, ht, _ := e.enter(t, "in-process", "host@x.org")
	guest, _, _ := e.enter(t, "in-process", "guest@x.org")
	host.HandleFrame(sendFrame("c-first", "hello")) // reads the row once: the guest came after the host
	waitCount(t, ht, wire.TypeAck, 1)
	counted := &countedSessions{SessionStore: e.rooms.o.Sessions}
	e.rooms.o.Sessions = counted
	for i := range 20 {
		host.HandleFrame(sendFrame(fmt.Sprintf("c-%d", i), "hello"))
	}
	waitCount(t, ht, wire.TypeAck, 21)
	if n := counted.reads.Load(); n != 0 {
		t.Fatalf("20 sends read the session row %d times, want 0", n)
	}
	guest.HandleFrame([]byte(`{"type":"end"}`))
	host.HandleFrame(sendFrame("c-late", "after the end"))
	if f := ht.wait(t, "the refusal", func(f wire.Frame) bool { return f.Type == wire.TypeError && f.ID == "c-late" }); f.Code != "chat_ended" {
		t.Fatalf("send after the end: %+v", f)
	}
}

// stalledAppends is a message store whose Append hangs until its context ends.
type stalledAppends struct {
	chat.MessageStore
	returned chan error
}

func (s stalledAppends) Append(ctx context.Context, m chat.Message) (chat.Message, bool, error) {
	<-ctx.Done()
	s.returned <- ctx.Err()
	return chat.Message{}, false, chat.Wrap(chat.EUnavailable, ctx.Err(), "the store stalled")
}

// TestStalledStoreCloses: a frame whose store call hangs past StoreTimeout closes the
// connection with 1013 (try again later), and the call is cancelled with it.
func TestStalledStoreCloses(t *testing.T) {
	// Long enough for entering on a busy machine; the stalled Append waits it out.
	e := newEnv(t, Options{StoreTimeout: time.Second}, hub.Options{})
	returned := make(chan error, 1)
	e.rooms.o.Messages = stalledAppends{MessageStore: e.store, returned: returned}
	host, ht, cancel := e.enter(t, "stall", "host@x.org")
	closed := make(chan struct{})
	go func() {
		for ht.closeCode() == 0 {
			time.Sleep(time.Millisecond)
		}
		cancel() // as the transport does when it closes
		close(closed)
	}()
	host.HandleFrame(sendFrame("c-1", "into the void"))
	<-closed
	if code := ht.closeCode(); code != wire.CloseTryAgainLater {
		t.Fatalf("closed with %d, want 1013", code)
	}
	select {
	case err := <-returned:
		if err == nil {
			t.Fatal("Append returned without its context ending")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the stalled Append was never cancelled")
	}
}

// slowAppends is a message store whose Append takes delay, and hangs until its
// context ends once stall is set.
type slowAppends struct {
	chat.MessageStore
	delay time.Duration
	stall atomic.Bool
}

func (s *slowAppends) Append(ctx context.Context, m chat.Message) (chat.Message, bool, error) {
	if s.stall.Load() {
		<-ctx.Done()
		return chat.Message{}, false, chat.Wrap(chat.EUnavailable, ctx.Err(), "the store stalled")
	}
	time.Sleep(s.delay) // a slow store, not a wait for something
	return s.MessageStore.Append(ctx, m)
}

// TestBusyConnectionIsNotStalled: StoreTimeout bounds one frame, not a run of them.
// A connection whose frames each take well under StoreTimeout, one after another for
// several times StoreTimeout, stays open with every message acknowledged (the stall
// timer, armed at the first frame, finds a later frame when it fires); a frame that
// then stalls, after the timer has gone idle, still closes it with 1013.
func TestBusyConnectionIsNotStalled(t *testing.T) {
	const timeout = 300 * time.Millisecond
	e := newEnv(t, Options{StoreTimeout: timeout}, hub.Options{})
	slow := &slowAppends{MessageStore: e.store, delay: timeout / 6}
	e.rooms.o.Messages = slow
	host, ht, cancel := e.enter(t, "busy", "host@x.org")
	start := time.Now()
	n := 0
	for time.Since(start) < 4*timeout {
		n++
		host.HandleFrame(sendFrame(fmt.Sprintf("c-%d", n), "busy"))
	}
	if code := ht.closeCode(); code != 0 {
		t.Fatalf("closed with %d after %d quick frames in %v", code, n, time.Since(start))
	}
	waitCount(t, ht, wire.TypeAck, n)
	testenv.Eventually(t, 10*time.Second, func() bool { return !host.stallArmed.Load() }, "the stall timer going idle")
	slow.stall.Store(true)
	handled := make(chan struct{})
	go func() {
		host.HandleFrame(sendFrame("c-stalled", "into the void"))
		close(handled)
	}()
	testenv.Eventually(t, 10*time.Second, func() bool { return ht.closeCode() != 0 }, "the close")
	cancel() // as the transport does when it closes
	<-handled
	if code := ht.closeCode(); code != wire.CloseTryAgainLater {
		t.Fatalf("closed with %d, want 1013", code)
	}
}

func waitCount(tb testing.TB, tr *transport, typ string, n int) {
	tb.Helper()
	testenv.Eventually(tb, 10*time.Second, func() bool { return tr.count(typ) >= n }, fmt.Sprintf("%d %s frames", n, typ))
}
