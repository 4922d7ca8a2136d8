package web

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/coder/websocket"

	"parley/internal/wire"
)

// TestWSBurstsAreSlowedNotRefused: two people on the default limits (20 messages a
// second, bursts of 40) each send 1,000 messages at once. The server reads them at
// the rate it allows — the senders' writes wait on TCP meanwhile — so every message
// is stored and delivered to both exactly once, in order, nobody is refused and no
// connection is closed. It takes the rate's time: about 48 s.
func TestWSBurstsAreSlowedNotRefused(t *testing.T) {
	if testing.Short() {
		t.Skip("48 s at the default rate")
	}
	t.Parallel() // mostly waiting: let the package's other tests run meanwhile
	const each = 1000
	e := newWSEnv(t, Config{})
	host, guest, session := e.enterBoth("burst")
	writeErr := make(chan error, 2)
	for _, p := range []struct {
		c      *wsClient
		prefix string
	}{{host, "h"}, {guest, "g"}} {
		go func() { // t.Fatal may not run here: the error is reported below
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			for i := range each {
				frame := fmt.Sprintf(`{"type":"send","id":"%s-%d","text":"burst %d"}`, p.prefix, i, i)
				if err := p.c.ws.Write(ctx, websocket.MessageText, []byte(frame)); err != nil {
					writeErr <- fmt.Errorf("%s writing message %d: %w", p.prefix, i, err)
					return
				}
			}
			writeErr <- nil
		}()
	}
	for _, c := range []*wsClient{host, guest} {
		msgs, acks := 0, 0
		deadline := time.After(2 * time.Minute)
		for msgs < 2*each || acks < each {
			select {
			case f, ok := <-c.frames:
				if !ok {
					t.Fatalf("connection closed after %d messages and %d acks: %v", msgs, acks, c.err)
				}
				switch f.Type {
				case wire.TypeMessage:
					msgs++
					if f.Seq != int64(msgs) {
						t.Fatalf("message %d has seq %d: lost, doubled or out of order", msgs, f.Seq)
					}
				case wire.TypeAck:
					acks++
				case wire.TypeError:
					t.Fatalf("refused after %d messages: %s", msgs, f.raw)
				}
			case <-deadline:
				t.Fatalf("after 2 minutes: %d messages and %d acks", msgs, acks)
			}
		}
	}
	for range 2 {
		if err := <-writeErr; err != nil {
			t.Fatal(err)
		}
	}
	last, err := e.store.LastSeq(context.Background(), session)
	if err != nil || last != 2*each {
		t.Fatalf("stored %d messages (%v), want %d", last, err, 2*each)
	}
	host.quiet(100 * time.Millisecond)
	guest.quiet(100 * time.Millisecond)
	if n := e.openConns(); n != 2 {
		t.Fatalf("%d connections open, want both", n)
	}
}
