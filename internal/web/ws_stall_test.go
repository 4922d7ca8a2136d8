package web

import (
	"context"
	"testing"
	"time"

	"github.com/coder/websocket"

	"parley/internal/chat"
	"parley/internal/wire"
)

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

// TestWSStalledStoreCloses: a frame whose store call hangs past the frame timeout
// closes the connection with 1013 (try again later), and the call is cancelled.
func TestWSStalledStoreCloses(t *testing.T) {
	e := newWSEnv(t, Config{})
	e.srv.storeMax = 50 * time.Millisecond
	stalled := stalledAppends{MessageStore: e.srv.messages, returned: make(chan error, 1)}
	e.srv.messages = stalled
	host := e.dial("stall", "host@x.org", "")
	host.expect(wire.TypeWelcome)
	host.send("c-1", "into the void")
	if code := host.closed(); code != websocket.StatusTryAgainLater {
		t.Fatalf("close status %d, want 1013", code)
	}
	select {
	case err := <-stalled.returned:
		if err == nil {
			t.Fatal("Append returned without its context ending")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the stalled Append was never cancelled")
	}
}
