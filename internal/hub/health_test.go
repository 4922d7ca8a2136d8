package hub

import (
	"context"
	"errors"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"parley/internal/chat"
	"parley/internal/membus"
	"parley/internal/sqlstore"
)

// deadBroker subscribes (the subscriptions were made before the outage) but neither
// publishes nor answers pings, like a Redis that is down.
type deadBroker struct{ bus *membus.Bus }

var errDead = errors.New("broker down")

func (b deadBroker) Subscribe(ctx context.Context, s string, fn func(chat.Event)) (func(), error) {
	return b.bus.Subscribe(ctx, s, fn)
}
func (b deadBroker) Publish(context.Context, chat.Event) error { return errDead }
func (b deadBroker) Ping(context.Context) error                { return errDead }
func (b deadBroker) OnReconnect(func())                        {}
func (b deadBroker) Close() error                              { return nil }

// TestBrokerDownReadsFromStore: messages another replica stores while the broker is
// down (their events never arrive) reach this replica's connections from the store
// within a health check or two, and a publish fails without blocking its caller.
func TestBrokerDownReadsFromStore(t *testing.T) {
	ctx := context.Background()
	store, err := sqlstore.OpenSQLite(ctx, filepath.Join(t.TempDir(), "parley.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	bus := membus.New()
	h := New(Options{Messages: store, Broker: deadBroker{bus}, Encode: encodeSeq,
		HealthCheck: 50 * time.Millisecond, PublishTimeout: 50 * time.Millisecond})
	t.Cleanup(func() { h.Close(); bus.Close(); store.Close() })
	f := &fixture{store: store, hub: h}
	var r recorder
	f.join(t, "s", "a@x.org", 0, &r)
	start := time.Now()
	h.Publish(chat.Event{Type: chat.EventMessage, Session: "s", Seq: 1, Frame: []byte("m1")})
	if d := time.Since(start); d > 10*time.Millisecond {
		t.Fatalf("Publish took %v with the broker down", d)
	}
	f.appendN(t, "s", 3) // stored elsewhere; no event comes
	wantSeqs(t, &r, 1, 3)
	if !h.BrokerDown() {
		t.Fatal("the hub does not say the broker is down")
	}
}

// outageBroker is the in-process bus behind a switch: while down, nothing subscribes,
// publishes or answers pings, as with a Redis that is down.
type outageBroker struct {
	bus  *membus.Bus
	down atomic.Bool
}

func (b *outageBroker) Subscribe(ctx context.Context, s string, fn func(chat.Event)) (func(), error) {
	if b.down.Load() {
		return nil, errDead
	}
	return b.bus.Subscribe(ctx, s, fn)
}

func (b *outageBroker) Publish(ctx context.Context, ev chat.Event) error {
	if b.down.Load() {
		return errDead
	}
	return b.bus.Publish(ctx, ev)
}

func (b *outageBroker) Ping(context.Context) error {
	if b.down.Load() {
		return errDead
	}
	return nil
}
func (b *outageBroker) OnReconnect(func()) {}
func (b *outageBroker) Close() error       { return nil }

// TestJoinWhileBrokerDown: a connection joins a chat while the broker cannot
// subscribe; it gets what is stored meanwhile from the store, and once the broker is
// back the session subscribes and live events flow again.
func TestJoinWhileBrokerDown(t *testing.T) {
	ctx := context.Background()
	store, err := sqlstore.OpenSQLite(ctx, filepath.Join(t.TempDir(), "parley.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	b := &outageBroker{bus: membus.New()}
	b.down.Store(true)
	h := New(Options{Messages: store, Broker: b, Encode: encodeSeq, HealthCheck: 50 * time.Millisecond})
	t.Cleanup(func() { h.Close(); b.bus.Close(); store.Close() })
	f := &fixture{store: store, hub: h}
	var r recorder
	f.join(t, "s", "a@x.org", 0, &r) // would fail if entering needed the broker
	f.appendN(t, "s", 2)
	wantSeqs(t, &r, 1, 2)
	b.down.Store(false)
	waitFor(t, "the session to subscribe again", func() bool {
		s := h.sessions["s"]
		s.lock()
		defer s.unlock()
		return s.cancel != nil
	})
	// An event only the subscription can bring (nothing in the store says it).
	if err := b.bus.Publish(ctx, chat.Event{Type: chat.EventEnded, Session: "s", Frame: []byte("ended")}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the live event", func() bool { got := r.got(); return len(got) == 3 && got[2] == "ended" })
}
