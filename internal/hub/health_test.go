package hub

import (
	"context"
	"errors"
	"path/filepath"
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
