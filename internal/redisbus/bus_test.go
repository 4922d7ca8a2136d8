package redisbus

import (
	"bytes"
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"parley/internal/chat"
	"parley/internal/testenv"
)

// testEnv is one test's Redis: a unique prefix, an admin client, and cleanup of
// every key under the prefix.
type testEnv struct {
	url    string
	prefix string
	admin  *redis.Client
}

func newTestEnv(t *testing.T) *testEnv {
	t.Helper()
	u := testenv.RedisURL(t)
	opts, err := redis.ParseURL(u)
	if err != nil {
		t.Fatal(err)
	}
	env := &testEnv{url: u, prefix: testenv.UniqueName(t, "parleytest") + ":", admin: redis.NewClient(opts)}
	t.Cleanup(func() {
		ctx := context.Background()
		iter := env.admin.Scan(ctx, 0, env.prefix+"*", 100).Iterator()
		for iter.Next(ctx) {
			env.admin.Del(ctx, iter.Val())
		}
		_ = env.admin.Close()
	})
	return env
}

// bus opens a replica with the test's prefix, closed at cleanup.
func (env *testEnv) bus(t *testing.T, name string, ttl time.Duration) *Bus {
	t.Helper()
	b, err := New(context.Background(), Options{
		URL: env.url, Prefix: env.prefix, ReplicaID: name + "-" + randomID(),
		PresenceTTL: ttl, HealthInterval: 200 * time.Millisecond,
	})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b
}

// recorder collects the events delivered to one subscriber.
type recorder struct {
	mu     sync.Mutex
	events []chat.Event
}

func (r *recorder) add(ev chat.Event) {
	r.mu.Lock()
	r.events = append(r.events, ev)
	r.mu.Unlock()
}

func (r *recorder) snapshot() []chat.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]chat.Event(nil), r.events...)
}

// hasSeq reports whether the recorder got an event with this seq.
func (r *recorder) hasSeq(seq int64) bool {
	for _, ev := range r.snapshot() {
		if ev.Seq == seq {
			return true
		}
	}
	return false
}

func subscribe(t *testing.T, b *Bus, session string) (*recorder, func()) {
	t.Helper()
	r := &recorder{}
	cancel, err := b.Subscribe(context.Background(), session, r.add)
	if err != nil {
		t.Fatalf("Subscribe: %v", err)
	}
	t.Cleanup(cancel)
	return r, cancel
}

func messageEvent(session string, seq int64) chat.Event {
	return chat.Event{Type: chat.EventMessage, Session: session, Seq: seq,
		Frame: []byte(`{"type":"message","seq":` + strconv.FormatInt(seq, 10) + `}`)}
}

// TestFanOut: a publish on replica A reaches every subscriber on A and B exactly once
// and in order; a sentinel published last proves nothing extra arrives.
func TestFanOut(t *testing.T) {
	env := newTestEnv(t)
	a, b := env.bus(t, "a", 0), env.bus(t, "b", 0)
	const session, n = "s1", 1000
	recs := make([]*recorder, 0, 3)
	for _, bus := range []*Bus{a, a, b} {
		r, _ := subscribe(t, bus, session)
		recs = append(recs, r)
	}
	other, _ := subscribe(t, b, "s2")
	ctx := context.Background()
	for seq := int64(1); seq <= n+1; seq++ { // n+1 is the sentinel
		if err := a.Publish(ctx, messageEvent(session, seq)); err != nil {
			t.Fatalf("Publish: %v", err)
		}
	}
	for i, r := range recs {
		testenv.Eventually(t, 10*time.Second, func() bool { return r.hasSeq(n + 1) }, fmt.Sprintf("subscriber %d to get the sentinel", i))
		got := r.snapshot()
		if len(got) != n+1 {
			t.Fatalf("subscriber %d got %d events, want %d", i, len(got), n+1)
		}
		for j, ev := range got {
			want := messageEvent(session, int64(j+1))
			if ev.Seq != want.Seq || ev.Session != session || ev.Type != chat.EventMessage || !bytes.Equal(ev.Frame, want.Frame) {
				t.Fatalf("subscriber %d event %d = %+v, want %+v", i, j, ev, want)
			}
		}
	}
	if got := other.snapshot(); len(got) != 0 {
		t.Fatalf("subscriber of another session got %d events", len(got))
	}
}

// TestSubscribeUnsubscribe: the replica holds one Redis subscription per session while
// it has local subscribers, and drops it when the last one leaves.
func TestSubscribeUnsubscribe(t *testing.T) {
	env := newTestEnv(t)
	a := env.bus(t, "a", 0)
	ch := a.channel("s1")
	numsub := func() int64 {
		return env.admin.PubSubNumSub(context.Background(), ch).Val()[ch]
	}
	_, cancel1 := subscribe(t, a, "s1")
	r2, cancel2 := subscribe(t, a, "s1")
	if got := numsub(); got != 1 {
		t.Fatalf("NUMSUB with two local subscribers = %d, want 1", got)
	}
	cancel1()
	cancel1() // twice is harmless
	if got := numsub(); got != 1 {
		t.Fatalf("NUMSUB after one left = %d, want 1", got)
	}
	if err := a.Publish(context.Background(), messageEvent("s1", 7)); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 10*time.Second, func() bool { return r2.hasSeq(7) }, "the remaining subscriber to get seq 7")
	cancel2()
	testenv.Eventually(t, 10*time.Second, func() bool { return numsub() == 0 }, "NUMSUB 0 after the last left")

	r3, _ := subscribe(t, a, "s1")
	if got := numsub(); got != 1 {
		t.Fatalf("NUMSUB after subscribing again = %d, want 1", got)
	}
	if err := a.Publish(context.Background(), messageEvent("s1", 8)); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 10*time.Second, func() bool { return r3.hasSeq(8) }, "the new subscriber to get seq 8")
	if r2.hasSeq(8) {
		t.Fatal("a canceled subscriber got an event")
	}
}

// TestReconnect: killing the replica's subscriber connection makes go-redis reconnect
// and resubscribe; the bus then calls OnReconnect, and later publishes arrive again.
func TestReconnect(t *testing.T) {
	env := newTestEnv(t)
	a, b := env.bus(t, "a", 0), env.bus(t, "b", 0)
	var reconnects atomic.Int32
	a.OnReconnect(func() { reconnects.Add(1) })
	r, _ := subscribe(t, a, "s1")
	ctx := context.Background()
	if err := b.Publish(ctx, messageEvent("s1", 1)); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 10*time.Second, func() bool { return r.hasSeq(1) }, "seq 1")

	for round := int32(1); round <= 2; round++ {
		killClient(t, env.admin, "parley-sub-"+a.ReplicaID())
		testenv.Eventually(t, 10*time.Second, func() bool { return reconnects.Load() == round }, "the OnReconnect callback")
		if err := a.Ping(ctx); err != nil {
			t.Fatalf("Ping after reconnect: %v", err)
		}
		seq := int64(round + 1)
		if err := b.Publish(ctx, messageEvent("s1", seq)); err != nil {
			t.Fatal(err)
		}
		testenv.Eventually(t, 10*time.Second, func() bool { return r.hasSeq(seq) }, fmt.Sprintf("seq %d after reconnect", seq))
	}
	if got := len(r.snapshot()); got != 3 {
		t.Fatalf("got %d events, want 3", got)
	}
}

// killClient kills the connection with the given CLIENT SETNAME name.
func killClient(t *testing.T, admin *redis.Client, name string) {
	t.Helper()
	ctx := context.Background()
	list, err := admin.ClientList(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(list, "\n") {
		if !strings.Contains(line, " name="+name+" ") {
			continue
		}
		id := strings.TrimPrefix(strings.Fields(line)[0], "id=")
		if err := admin.Do(ctx, "CLIENT", "KILL", "ID", id).Err(); err != nil {
			t.Fatalf("CLIENT KILL ID %s: %v", id, err)
		}
		return
	}
	t.Fatalf("no client named %s", name)
}

// TestPresence walks one person's connections across two replicas.
func TestPresence(t *testing.T) {
	env := newTestEnv(t)
	a, b := env.bus(t, "a", 0), env.bus(t, "b", 0)
	ctx := context.Background()
	const s, e = "s1", "host@example.com"
	steps := []struct {
		name string
		op   func() (bool, error)
		want bool // the op's went-online / went-offline result
		on   bool // Online seen from the other replica afterwards
	}{
		{"FirstConnectOnA", func() (bool, error) { return a.Connected(ctx, s, e) }, true, true},
		{"SecondTabOnA", func() (bool, error) { return a.Connected(ctx, s, e) }, false, true},
		{"ConnectOnB", func() (bool, error) { return b.Connected(ctx, s, e) }, false, true},
		{"CloseOneTabOnA", func() (bool, error) { return a.Disconnected(ctx, s, e) }, false, true},
		{"CloseLastTabOnA", func() (bool, error) { return a.Disconnected(ctx, s, e) }, false, true},
		{"CloseOnB", func() (bool, error) { return b.Disconnected(ctx, s, e) }, true, false},
		{"ExtraDisconnect", func() (bool, error) { return b.Disconnected(ctx, s, e) }, false, false},
		{"BackOnB", func() (bool, error) { return b.Connected(ctx, s, e) }, true, true},
	}
	for _, st := range steps {
		got, err := st.op()
		if err != nil || got != st.want {
			t.Fatalf("%s = %v, %v; want %v", st.name, got, err, st.want)
		}
		for _, bus := range []*Bus{a, b} {
			if on, err := bus.Online(ctx, s, e); err != nil || on != st.on {
				t.Fatalf("%s: Online on %s = %v, %v; want %v", st.name, bus.ReplicaID(), on, err, st.on)
			}
		}
	}
	if on, _ := a.Online(ctx, s, "participant@example.com"); on {
		t.Fatal("someone who never connected is online")
	}
	// A clean Close withdraws the replica's claims at once.
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if on, err := a.Online(ctx, s, e); err != nil || on {
		t.Fatalf("Online after the only replica with a connection closed = %v, %v", on, err)
	}
}

// TestPresenceExpiry: a replica that dies without cleaning up stops counting after
// its TTL, and a live replica keeps its claims by heartbeat beyond the TTL.
func TestPresenceExpiry(t *testing.T) {
	env := newTestEnv(t)
	const ttl = 600 * time.Millisecond
	a, dead := env.bus(t, "a", ttl), env.bus(t, "dead", ttl)
	ctx := context.Background()
	if on, err := dead.Connected(ctx, "s1", "p@example.com"); err != nil || !on {
		t.Fatalf("Connected on the doomed replica = %v, %v", on, err)
	}
	if _, err := a.Connected(ctx, "s1", "h@example.com"); err != nil {
		t.Fatal(err)
	}
	dead.crash()
	start := time.Now()
	testenv.Eventually(t, 10*time.Second, func() bool {
		on, err := a.Online(ctx, "s1", "p@example.com")
		return err == nil && !on
	}, "the dead replica's claim to expire")
	if waited := time.Since(start); waited < ttl/2 {
		t.Fatalf("claim expired after %v, before its TTL %v", waited, ttl)
	}
	if on, err := a.Online(ctx, "s1", "h@example.com"); err != nil || !on {
		t.Fatalf("live replica's claim after %v = %v, %v; want kept by heartbeat", time.Since(start), on, err)
	}
	if on, err := a.Connected(ctx, "s1", "p@example.com"); err != nil || !on {
		t.Fatalf("Connected after the dead claim expired = %v, %v; want went online", on, err)
	}
}

func TestEnvelope(t *testing.T) {
	tests := []struct {
		name string
		ev   chat.Event
	}{
		{"Message", chat.Event{Type: chat.EventMessage, Session: "s", Seq: 1 << 40, Frame: []byte(`{"a":1}`)}},
		{"PresenceOnline", chat.Event{Type: chat.EventPresence, Session: "s", Email: "é@example.com", Online: true, Frame: []byte(`{}`)}},
		{"PresenceOffline", chat.Event{Type: chat.EventPresence, Session: "s", Email: "x@y"}},
		{"Ended", chat.Event{Type: chat.EventEnded, Session: "s"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := decodeEvent("s", encodeEvent(tt.ev))
			if err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(got) != fmt.Sprint(tt.ev) {
				t.Fatalf("round trip = %+v, want %+v", got, tt.ev)
			}
		})
	}
	for _, bad := range [][]byte{nil, {9, 1, 0, 0, 0}, {1, 1, 0, 2, 50}} {
		if _, err := decodeEvent("s", bad); err == nil {
			t.Errorf("decodeEvent(%v) accepted a malformed envelope", bad)
		}
	}
}

// TestConcurrentSubscribers: subscribers of one session coming and going at once
// leave Redis subscribed exactly while at least one remains.
func TestConcurrentSubscribers(t *testing.T) {
	env := newTestEnv(t)
	a := env.bus(t, "a", 0)
	ctx := context.Background()
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Go(func() {
			for range 10 {
				cancel, err := a.Subscribe(ctx, "s1", func(chat.Event) {})
				if err != nil {
					t.Errorf("Subscribe %d: %v", i, err)
					return
				}
				cancel()
			}
		})
	}
	wg.Wait()
	ch := a.channel("s1")
	testenv.Eventually(t, 10*time.Second, func() bool {
		return env.admin.PubSubNumSub(ctx, ch).Val()[ch] == 0
	}, "NUMSUB 0 after everyone left")
	r, _ := subscribe(t, a, "s1")
	if err := a.Publish(ctx, messageEvent("s1", 1)); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 10*time.Second, func() bool { return r.hasSeq(1) }, "delivery to the last subscriber")
}

// checkPublishBatch publishes n events for each of several sessions, interleaved, in
// pipelined batches of 50 from replica a, and checks that every subscriber on b gets
// its session's events exactly once and in order.
func checkPublishBatch(t *testing.T, a, b *Bus) {
	t.Helper()
	const sessions, n = 7, 300
	recs := make([]*recorder, sessions)
	for i := range recs {
		recs[i], _ = subscribe(t, b, fmt.Sprintf("s%d", i))
	}
	var batch []chat.Event
	for seq := int64(1); seq <= n; seq++ {
		for i := range sessions {
			batch = append(batch, messageEvent(fmt.Sprintf("s%d", i), seq))
			if len(batch) == 50 {
				if err := a.PublishBatch(context.Background(), batch); err != nil {
					t.Fatalf("PublishBatch: %v", err)
				}
				batch = batch[:0]
			}
		}
	}
	if err := a.PublishBatch(context.Background(), batch); err != nil {
		t.Fatalf("PublishBatch: %v", err)
	}
	for i, r := range recs {
		testenv.Eventually(t, 10*time.Second, func() bool { return r.hasSeq(n) }, fmt.Sprintf("session %d to get its last event", i))
		got := r.snapshot()
		if len(got) != n {
			t.Fatalf("session %d got %d events, want %d", i, len(got), n)
		}
		for j, ev := range got {
			if ev.Seq != int64(j+1) || ev.Session != fmt.Sprintf("s%d", i) {
				t.Fatalf("session %d event %d: seq %d of %s", i, j, ev.Seq, ev.Session)
			}
		}
	}
}

// TestPublishBatch: events published in one pipeline reach the other replica's
// subscribers once each, in order per session.
func TestPublishBatch(t *testing.T) {
	env := newTestEnv(t)
	checkPublishBatch(t, env.bus(t, "a", 0), env.bus(t, "b", 0))
}
