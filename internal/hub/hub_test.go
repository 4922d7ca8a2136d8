package hub

import (
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"parley/internal/chat"
	"parley/internal/membus"
	"parley/internal/sqlstore"
	"parley/internal/testenv"
	"parley/internal/wire"
)

// waitFor polls cond until it holds, for 5 s at most.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	testenv.Eventually(t, 5*time.Second, cond, what)
}

// encodeSeq is the test's message frame: just the seq, so order is easy to check.
func encodeSeq(m chat.Message) []byte { return []byte("m" + strconv.FormatInt(m.Seq, 10)) }

// reconnectBus is the in-process bus with a way to trigger what a reconnect triggers.
type reconnectBus struct {
	*membus.Bus
	mu  sync.Mutex
	fns []func()
}

func (b *reconnectBus) OnReconnect(fn func()) { b.mu.Lock(); b.fns = append(b.fns, fn); b.mu.Unlock() }
func (b *reconnectBus) reconnected() {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, fn := range b.fns {
		fn()
	}
}

type fixture struct {
	store *sqlstore.DB
	bus   *reconnectBus
	hub   *Hub
}

func newFixture(t testing.TB, o Options) *fixture {
	t.Helper()
	ctx := context.Background()
	store, err := sqlstore.OpenSQLite(ctx, filepath.Join(t.TempDir(), "parley.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	bus := &reconnectBus{Bus: membus.New()}
	o.Messages, o.Broker, o.Encode = store, bus, encodeSeq
	if o.GapWait == 0 {
		o.GapWait = 20 * time.Millisecond
	}
	f := &fixture{store: store, bus: bus, hub: New(o)}
	t.Cleanup(func() { f.hub.Close(); bus.Close(); store.Close() })
	return f
}

// appendN stores n messages in session and returns them.
func (f *fixture) appendN(t testing.TB, session string, n int) []chat.Message {
	t.Helper()
	out := make([]chat.Message, 0, n)
	for i := 0; i < n; i++ {
		m, _, err := f.store.Append(context.Background(), chat.Message{
			SessionID: session, ClientID: fmt.Sprintf("c-%d-%d", time.Now().UnixNano(), i),
			From: "a@x.org", Room: "r", Kind: chat.KindChat, Text: "hi"})
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, m)
	}
	return out
}

func (f *fixture) publish(t testing.TB, m chat.Message) {
	t.Helper()
	err := f.bus.Publish(context.Background(), chat.Event{Type: chat.EventMessage, Session: m.SessionID, Seq: m.Seq, Frame: encodeSeq(m)})
	if err != nil {
		t.Fatal(err)
	}
}

// recorder is a Sender that keeps every frame it is given.
type recorder struct {
	mu       sync.Mutex
	frames   []string
	refuse   bool
	attempts int // Send calls, refused ones included
}

func (r *recorder) Send(frame []byte) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.attempts++
	if r.refuse {
		return false
	}
	r.frames = append(r.frames, string(frame))
	return true
}

func (r *recorder) got() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.frames...)
}

// join joins with a replay that records into the same recorder.
func (f *fixture) join(t testing.TB, session, email string, after int64, r *recorder) *Member {
	t.Helper()
	m, err := f.hub.Join(context.Background(), Join{Session: session, Email: email, After: after, To: r,
		Replay: func(frame []byte) error { r.Send(frame); return nil }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Leave)
	return m
}

// wantSeqs checks that the recorder holds exactly the message frames from..to in order.
func wantSeqs(t testing.TB, r *recorder, from, to int64) {
	t.Helper()
	waitFor(t, fmt.Sprintf("messages %d..%d", from, to), func() bool { return int64(len(r.got())) >= to-from+1 })
	got := r.got()
	if int64(len(got)) != to-from+1 {
		t.Fatalf("got %d frames, want %d: %v", len(got), to-from+1, got)
	}
	for i, f := range got {
		if want := "m" + strconv.FormatInt(from+int64(i), 10); f != want {
			t.Fatalf("frame %d = %q, want %q (all: %v)", i, f, want, got)
		}
	}
}

func TestOutOfOrderAndDuplicatesDeliveredOnceInOrder(t *testing.T) {
	f := newFixture(t, Options{})
	var r recorder
	f.join(t, "s", "b@x.org", 0, &r)
	msgs := f.appendN(t, "s", 200)
	order := rand.Perm(len(msgs))
	for _, i := range order {
		f.publish(t, msgs[i])
		if i%7 == 0 {
			f.publish(t, msgs[i]) // duplicate
		}
	}
	wantSeqs(t, &r, 1, 200)
}

func TestGapFilledFromStore(t *testing.T) {
	tests := []struct {
		name    string
		publish func(f *fixture, msgs []chat.Message)
	}{
		{"MissingMiddle", func(f *fixture, msgs []chat.Message) {
			f.publish(t, msgs[0])
			f.publish(t, msgs[2]) // seq 2 never published: filled from the store
		}},
		{"AfterReconnect", func(f *fixture, msgs []chat.Message) {
			f.bus.reconnected() // nothing published at all
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, Options{})
			var r recorder
			f.join(t, "s", "b@x.org", 0, &r)
			msgs := f.appendN(t, "s", 3)
			tt.publish(f, msgs)
			wantSeqs(t, &r, 1, 3)
		})
	}
}

func TestReplayThenLiveWithoutGapOrDuplicate(t *testing.T) {
	tests := []struct {
		name   string
		opts   Options
		window int
	}{
		{"Defaults", Options{PageSize: 7}, 0},
		{"LiveReplayedFromStore", Options{PageSize: 7, MaxBuffered: 5}, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, tt.opts)
			f.appendN(t, "s", 50)
			var watcher recorder
			f.join(t, "s", "a@x.org", 0, &watcher) // keeps the session subscribed

			// Messages keep arriving while the second connection replays slowly.
			var wg sync.WaitGroup
			wg.Add(1)
			go func() { // t.Fatal may not run here: errors are reported and the loop stops
				defer wg.Done()
				for i := 0; i < 100; i++ {
					m, _, err := f.store.Append(context.Background(), chat.Message{SessionID: "s",
						ClientID: fmt.Sprintf("live-%d", i), From: "a@x.org", Room: "r", Kind: chat.KindChat, Text: "hi"})
					if err == nil {
						err = f.bus.Publish(context.Background(), chat.Event{Type: chat.EventMessage, Session: "s", Seq: m.Seq, Frame: encodeSeq(m)})
					}
					if err != nil {
						t.Errorf("storing and publishing message %d: %v", i, err)
						return
					}
				}
			}()
			var r recorder
			m, err := f.hub.Join(context.Background(), Join{Session: "s", Email: "b@x.org", After: 10, To: &r, Window: tt.window,
				Replay: func(frame []byte) error { time.Sleep(100 * time.Microsecond); r.Send(frame); return nil }})
			if err != nil {
				t.Fatal(err)
			}
			defer m.Leave()
			wg.Wait()
			wantSeqs(t, &r, 11, 150)
			wantSeqs(t, &watcher, 1, 150) // the watcher replayed 1..50 itself
		})
	}
}

func TestPresenceNotSentToItsSubject(t *testing.T) {
	f := newFixture(t, Options{})
	var a, b recorder
	f.join(t, "s", "a@x.org", 0, &a)
	f.join(t, "s", "b@x.org", 0, &b)
	ctx := context.Background()
	_ = f.bus.Publish(ctx, chat.Event{Type: chat.EventPresence, Session: "s", Email: "a@x.org", Online: true, Frame: []byte("p-a")})
	_ = f.bus.Publish(ctx, chat.Event{Type: chat.EventEnded, Session: "s", Frame: []byte("ended")})
	waitFor(t, "ended at a", func() bool { return len(a.got()) == 1 })
	waitFor(t, "both at b", func() bool { return len(b.got()) == 2 })
	if got := a.got(); got[0] != "ended" {
		t.Fatalf("a got %v", got)
	}
	if got := b.got(); got[0] != "p-a" || got[1] != "ended" {
		t.Fatalf("b got %v", got)
	}
}

func TestSubscriptionFollowsLocalConnections(t *testing.T) {
	f := newFixture(t, Options{})
	var r1, r2 recorder
	m1 := f.join(t, "s", "a@x.org", 0, &r1)
	m2 := f.join(t, "s", "b@x.org", 0, &r2)
	if n := f.hub.Sessions(); n != 1 {
		t.Fatalf("Sessions = %d, want 1", n)
	}
	m1.Leave()
	m1.Leave() // twice is harmless
	if n := f.hub.Sessions(); n != 1 {
		t.Fatalf("Sessions after one leave = %d, want 1", n)
	}
	m2.Leave()
	if n := f.hub.Sessions(); n != 0 {
		t.Fatalf("Sessions after last leave = %d, want 0", n)
	}
	// A fresh join subscribes again and gets what was stored meanwhile.
	f.appendN(t, "s", 2)
	var r3 recorder
	f.join(t, "s", "a@x.org", 0, &r3)
	msgs := f.appendN(t, "s", 1)
	f.publish(t, msgs[0])
	wantSeqs(t, &r3, 1, 3)
}

// TestRefusingSenderGetsNothingMore: once a connection's Sender refuses a frame (it
// is being closed), the hub offers it nothing more, even if it would take frames
// again, while the other connection gets everything.
func TestRefusingSenderGetsNothingMore(t *testing.T) {
	f := newFixture(t, Options{})
	slow := &recorder{refuse: true}
	var ok recorder
	f.join(t, "s", "a@x.org", 0, slow)
	f.join(t, "s", "b@x.org", 0, &ok)
	for _, m := range f.appendN(t, "s", 3) {
		f.publish(t, m)
	}
	wantSeqs(t, &ok, 1, 3)
	slow.mu.Lock()
	slow.refuse = false
	slow.mu.Unlock()
	for _, m := range f.appendN(t, "s", 2) {
		f.publish(t, m)
	}
	_ = f.bus.Publish(context.Background(), chat.Event{Type: chat.EventEnded, Session: "s", Frame: []byte("ended")})
	waitFor(t, "the rest and the end at the other connection", func() bool { return len(ok.got()) == 6 })
	slow.mu.Lock()
	defer slow.mu.Unlock()
	if slow.attempts != 1 || len(slow.frames) != 0 {
		t.Fatalf("the refusing connection was offered %d frames and took %v; want only the first, refused", slow.attempts, slow.frames)
	}
}

// TestConnectionSkipsWhatItReplayed: a connection whose replay read messages from
// the store that the session has not delivered yet (their broker events are still on
// the way) is not given them again when the events arrive.
func TestConnectionSkipsWhatItReplayed(t *testing.T) {
	f := newFixture(t, Options{})
	var a recorder
	f.join(t, "s", "a@x.org", 0, &a) // keeps the session subscribed
	for _, m := range f.appendN(t, "s", 3) {
		f.publish(t, m)
	}
	wantSeqs(t, &a, 1, 3)
	late := f.appendN(t, "s", 2) // stored; their events are not published yet
	var b recorder
	f.join(t, "s", "b@x.org", 0, &b) // replays 1..5 from the store
	wantSeqs(t, &b, 1, 5)
	for _, m := range late {
		f.publish(t, m)
	}
	for _, m := range f.appendN(t, "s", 1) {
		f.publish(t, m)
	}
	wantSeqs(t, &a, 1, 6)
	wantSeqs(t, &b, 1, 6) // 4 and 5 once, from the replay
}

func TestJoinAfterClose(t *testing.T) {
	f := newFixture(t, Options{})
	f.hub.Close()
	_, err := f.hub.Join(context.Background(), Join{Session: "s", To: &recorder{}, Replay: func([]byte) error { return nil }})
	if !chat.IsCode(err, chat.EUnavailable) {
		t.Fatalf("Join after Close: %v", err)
	}
}

// BenchmarkFanOut measures delivering one message event to a session with two local
// connections (the one-to-one case), through the in-process bus.
func BenchmarkFanOut(b *testing.B) {
	f := newFixture(b, Options{})
	var q1, q2 countingSender
	for _, q := range []*countingSender{&q1, &q2} {
		m, err := f.hub.Join(context.Background(), Join{Session: "s", To: q, Replay: func([]byte) error { return nil }})
		if err != nil {
			b.Fatal(err)
		}
		defer m.Leave()
	}
	s := f.hub.sessions["s"]
	frame := []byte(`{"type":"message","seq":1}`)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		s.onEvent(chat.Event{Type: chat.EventMessage, Session: "s", Seq: int64(i + 1), Frame: frame})
	}
	b.StopTimer()
	if q1.n.Load() != int64(b.N) {
		b.Fatalf("delivered %d of %d", q1.n.Load(), b.N)
	}
}

func TestEndedEventMarksSession(t *testing.T) {
	f := newFixture(t, Options{})
	var rec1, rec2 recorder
	join := func(r *recorder) *Member {
		m, err := f.hub.Join(context.Background(), Join{Session: "s", To: r, Replay: func([]byte) error { return nil }})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(m.Leave)
		return m
	}
	m1, m2 := join(&rec1), join(&rec2)
	if m1.Ended() || m2.Ended() {
		t.Fatal("ended before any event")
	}
	if err := f.bus.Publish(context.Background(), chat.Event{Type: chat.EventEnded, Session: "s", Frame: []byte(`{"type":"ended"}`)}); err != nil {
		t.Fatal(err)
	}
	// The flag is set before the frame is queued: a client that saw the frame and
	// sends is refused.
	waitFor(t, "the ended frame", func() bool {
		rec1.mu.Lock()
		defer rec1.mu.Unlock()
		return len(rec1.frames) > 0
	})
	if !m1.Ended() || !m2.Ended() {
		t.Fatal("ended frame delivered before the session was marked ended")
	}
}

func TestSendQueueShrinksWhenDrained(t *testing.T) {
	release := make(chan struct{})
	q := NewSendQueue(256, eachFrame(func([]byte) error { <-release; return nil }), func(error) { t.Error("unexpected fail") })
	for range 100 {
		q.Send([]byte("x"))
	}
	close(release)
	waitFor(t, "the queue to drain", func() bool {
		q.mu.Lock()
		defer q.mu.Unlock()
		return !q.writing
	})
	q.mu.Lock()
	size := len(q.ring)
	q.mu.Unlock()
	if size > idleRing {
		t.Fatalf("drained queue keeps a ring of %d", size)
	}
	q.Close()
	q.Wait()
}

// TestDeliverThenBrokerCopyOnce: a message delivered locally by the replica that stored
// it reaches the session's connections at once, and the broker's copy after it is
// dropped as a duplicate.
func TestDeliverThenBrokerCopyOnce(t *testing.T) {
	f := newFixture(t, Options{})
	var sender, peer recorder
	m := f.join(t, "s", "a@x.org", 0, &sender)
	f.join(t, "s", "b@x.org", 0, &peer)
	msgs := f.appendN(t, "s", 3)
	for _, msg := range msgs {
		m.Deliver(msg.Seq, encodeSeq(msg))
		// Delivered before Deliver returns, without the broker.
		if got := peer.got(); len(got) != int(msg.Seq) {
			t.Fatalf("after Deliver(%d) the peer has %v", msg.Seq, got)
		}
		f.publish(t, msg)
	}
	f.appendN(t, "s", 1)
	f.publish(t, chat.Message{SessionID: "s", Seq: 4})
	wantSeqs(t, &sender, 1, 4)
	wantSeqs(t, &peer, 1, 4)
}

// TestWatchMakesUpForALostPresenceEvent: a connection entered and was told its peer
// was offline; the peer then came online on another replica, but the broker lost
// their event. The presence watch's next reading differs from what was told, and the
// connection is told the peer is online.
func TestWatchMakesUpForALostPresenceEvent(t *testing.T) {
	p := membus.NewPresence()
	f := newFixture(t, Options{Presence: p, PresenceCheck: 50 * time.Millisecond})
	r := &recorder{}
	m, err := f.hub.Join(context.Background(), Join{Session: "s1", Email: "ann@x.org", Peer: "bob@x.org", To: r,
		Replay: func(frame []byte) error { r.Send(frame); return nil }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Leave)
	m.TellPresence("bob@x.org", m.PresenceMark("bob@x.org"), false, wire.Presence("bob@x.org", false))
	if _, err := p.Connected(context.Background(), "s1", "bob@x.org"); err != nil { // no event published
		t.Fatal(err)
	}
	online := string(wire.Presence("bob@x.org", true))
	waitFor(t, "ann told bob is online", func() bool {
		got := r.got()
		return len(got) > 0 && got[len(got)-1] == online
	})
}
