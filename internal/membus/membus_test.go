package membus

import (
	"context"
	"sync"
	"testing"
	"time"

	"parley/internal/chat"
	"parley/internal/testenv"
)

// recorder collects the seqs a subscriber sees.
type recorder struct {
	mu   sync.Mutex
	seqs []int64
}

func (r *recorder) add(ev chat.Event) { r.mu.Lock(); r.seqs = append(r.seqs, ev.Seq); r.mu.Unlock() }
func (r *recorder) len() int          { r.mu.Lock(); defer r.mu.Unlock(); return len(r.seqs) }
func (r *recorder) get() []int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]int64(nil), r.seqs...)
}

func TestBusDeliversEveryEventOnceInOrder(t *testing.T) {
	ctx := context.Background()
	b := New()
	defer b.Close()
	var a, c, other recorder
	cancelA, err := b.Subscribe(ctx, "s1", a.add)
	if err != nil {
		t.Fatal(err)
	}
	defer cancelA()
	cancelC, _ := b.Subscribe(ctx, "s1", func(ev chat.Event) {
		time.Sleep(10 * time.Microsecond) // a slow subscriber must not slow or reorder others
		c.add(ev)
	})
	defer cancelC()
	cancelO, _ := b.Subscribe(ctx, "s2", other.add)
	defer cancelO()

	const n = 2000
	for i := int64(1); i <= n; i++ {
		if err := b.Publish(ctx, chat.Event{Type: chat.EventMessage, Session: "s1", Seq: i}); err != nil {
			t.Fatal(err)
		}
	}
	testenv.Eventually(t, 5*time.Second, func() bool { return a.len() == n && c.len() == n }, "all events")
	for name, r := range map[string]*recorder{"a": &a, "c": &c} {
		for i, seq := range r.get() {
			if seq != int64(i+1) {
				t.Fatalf("%s: event %d has seq %d", name, i, seq)
			}
		}
	}
	if other.len() != 0 {
		t.Fatalf("subscriber of another session got %d events", other.len())
	}
}

func TestBusCancelStopsDelivery(t *testing.T) {
	ctx := context.Background()
	b := New()
	defer b.Close()
	var r recorder
	cancel, _ := b.Subscribe(ctx, "s", r.add)
	_ = b.Publish(ctx, chat.Event{Session: "s", Seq: 1})
	testenv.Eventually(t, 5*time.Second, func() bool { return r.len() == 1 }, "first event")
	cancel()
	cancel() // twice is harmless
	_ = b.Publish(ctx, chat.Event{Session: "s", Seq: 2})
	time.Sleep(20 * time.Millisecond) // nothing to await: we check that nothing arrives
	if r.len() != 1 {
		t.Fatalf("got %d events after cancel, want 1", r.len())
	}
}

func TestBusClosed(t *testing.T) {
	ctx := context.Background()
	b := New()
	if err := b.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	b.OnReconnect(func() {})
	_ = b.Close()
	if err := b.Publish(ctx, chat.Event{Session: "s"}); !chat.IsCode(err, chat.EUnavailable) {
		t.Fatalf("Publish after Close: %v", err)
	}
	if _, err := b.Subscribe(ctx, "s", func(chat.Event) {}); !chat.IsCode(err, chat.EUnavailable) {
		t.Fatalf("Subscribe after Close: %v", err)
	}
	if err := b.Ping(ctx); !chat.IsCode(err, chat.EUnavailable) {
		t.Fatalf("Ping after Close: %v", err)
	}
}

func TestPresence(t *testing.T) {
	ctx := context.Background()
	p := NewPresence()
	defer p.Close()
	steps := []struct {
		name   string
		op     string // "+" connect, "-" disconnect
		email  string
		change bool // wentOnline / wentOffline
		online bool // a's state after the step
	}{
		{"FirstTabGoesOnline", "+", "a", true, true},
		{"SecondTabNoChange", "+", "a", false, true},
		{"OtherPersonIndependent", "+", "b", true, true},
		{"ClosingOneTabStaysOnline", "-", "a", false, true},
		{"ClosingLastTabGoesOffline", "-", "a", true, false},
		{"ExtraDisconnectHarmless", "-", "a", false, false},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			var change bool
			var err error
			if st.op == "+" {
				change, err = p.Connected(ctx, "s", st.email)
			} else {
				change, err = p.Disconnected(ctx, "s", st.email)
			}
			if err != nil || change != st.change {
				t.Fatalf("change = %v, %v; want %v", change, err, st.change)
			}
			if on, _ := p.Online(ctx, "s", "a"); on != st.online {
				t.Fatalf("a online = %v, want %v", on, st.online)
			}
		})
	}
	if on, _ := p.Online(ctx, "other", "b"); on {
		t.Fatal("presence leaked across sessions")
	}
}
