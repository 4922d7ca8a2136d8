package room

import (
	"context"
	"errors"
	"testing"
	"time"

	"parley/internal/chat"
	"parley/internal/hub"
	"parley/internal/membus"
	"parley/internal/wire"
)

// hungBroker is a broker whose Publish and Ping hang until their context ends, as a
// Redis stopped with SIGSTOP does; subscriptions were made before it hung, and work.
type hungBroker struct{ bus *membus.Bus }

var _ chat.Broker = hungBroker{}

func (b hungBroker) Subscribe(ctx context.Context, s string, fn func(chat.Event)) (func(), error) {
	return b.bus.Subscribe(ctx, s, fn)
}
func (b hungBroker) Publish(ctx context.Context, ev chat.Event) error { <-ctx.Done(); return ctx.Err() }
func (b hungBroker) Ping(ctx context.Context) error                   { <-ctx.Done(); return ctx.Err() }
func (b hungBroker) OnReconnect(fn func())                            {}
func (b hungBroker) Close() error                                     { return nil }

// TestHungBrokerStallsNoSender: with the broker's publishes hanging, every send is
// acked at once and reaches the other person on this replica, and no connection is
// closed; the publishes wait in the queue, bounded by their timeout.
func TestHungBrokerStallsNoSender(t *testing.T) {
	bus := membus.New()
	defer bus.Close()
	e := newEnv(t, Options{}, hub.Options{Broker: hungBroker{bus},
		PublishTimeout: time.Second, PublishQueue: 16})
	host, ht, _ := e.enter(t, "hung", "host@x.org")
	_, gt, _ := e.enter(t, "hung", "guest@x.org")
	for i := range 30 {
		start := time.Now()
		host.HandleFrame(sendFrame("c-"+string(rune('a'+i)), "x"))
		if d := time.Since(start); d > 500*time.Millisecond {
			t.Fatalf("send %d took %v with the broker hung", i, d)
		}
	}
	waitCount(t, ht, wire.TypeAck, 30)
	waitCount(t, gt, wire.TypeMessage, 30)
	if ht.closeCode() != 0 || gt.closeCode() != 0 {
		t.Fatal("a connection was closed")
	}
}

// failingPresence is a presence backend that does not answer.
type failingPresence struct{}

var errDown = errors.New("presence down")

func (failingPresence) Connected(ctx context.Context, s, e string) (bool, error) {
	return false, errDown
}
func (failingPresence) Disconnected(ctx context.Context, s, e string) (bool, error) {
	return false, errDown
}
func (failingPresence) Online(ctx context.Context, s, e string) (bool, error) { return false, errDown }

// TestEnterWithPresenceDown: people enter and chat while presence does not answer,
// and the presence frame says that presence is degraded.
func TestEnterWithPresenceDown(t *testing.T) {
	e := newEnv(t, Options{Presence: failingPresence{}}, hub.Options{Presence: failingPresence{}})
	host, _, _ := e.enter(t, "nopresence", "host@x.org")
	// The host's announcement (its online event) is over before the guest enters: an
	// event that reached the guest while the guest's own read of the host's presence
	// was under way would be the newer word, and the hub would drop the read's answer,
	// degraded mark and all (announcePresence).
	<-host.presenceDone
	guest, gt, _ := e.enter(t, "nopresence", "guest@x.org")
	// The guest's read of the host's presence is the frame that says presence is
	// degraded.
	f := gt.wait(t, "the peer's presence, marked degraded", func(f wire.Frame) bool {
		return f.Type == wire.TypePresence && f.Degraded != ""
	})
	if f.Email != "host@x.org" || f.Degraded != "presence" {
		t.Fatalf("presence %+v, want the host with degraded presence", f)
	}
	guest.HandleFrame(sendFrame("g-1", "still here"))
	gt.wait(t, "the ack", isType(wire.TypeAck))
}
