package room

import (
	"fmt"
	"testing"
	"time"

	"parley/internal/hub"
	"parley/internal/wire"
)

// TestFastSenderIsSlowedNotRefused: frames beyond the burst wait for the limiter
// (the reader does not read meanwhile) and are all stored and acked, none refused.
func TestFastSenderIsSlowedNotRefused(t *testing.T) {
	e := newEnv(t, Options{RatePerSec: 100, RateBurst: 5}, hub.Options{})
	host, ht, _ := e.enter(t, "fast", "host@x.org")
	start := time.Now()
	const n = 30
	for i := range n {
		host.HandleFrame(sendFrame(fmt.Sprintf("c-%d", i), "x"))
	}
	took := time.Since(start)
	waitCount(t, ht, wire.TypeAck, n)
	if got := ht.count(wire.TypeError); got != 0 {
		t.Fatalf("%d refusals for a client that was only fast: %+v", got, ht.all())
	}
	if min := (n - 5) * time.Second / 100; took < min*8/10 {
		t.Fatalf("%d frames handled in %v; the limit (100/s, burst 5) allows no less than %v", n, took, min)
	}
}

// TestOverLimitForLongRefusedWithRetryAfter: a client that stays over its rate longer
// than ThrottleMax gets a rate_limited refusal saying when to retry, and the refused
// frame is not stored.
func TestOverLimitForLongRefusedWithRetryAfter(t *testing.T) {
	e := newEnv(t, Options{RatePerSec: 50, RateBurst: 1, ThrottleMax: 100 * time.Millisecond}, hub.Options{})
	host, ht, _ := e.enter(t, "long", "host@x.org")
	var refused wire.Frame
	for i := 0; refused.Type == "" && i < 100; i++ {
		host.HandleFrame(sendFrame(fmt.Sprintf("c-%d", i), "x"))
		for _, f := range ht.all() {
			if f.Type == wire.TypeError {
				refused = f
			}
		}
	}
	if refused.Code != "rate_limited" || refused.RetryAfterMS <= 0 || refused.ID == "" {
		t.Fatalf("refusal %+v, want rate_limited with retry_after_ms and the frame's id", refused)
	}
	for _, f := range ht.all() {
		if f.Type == wire.TypeAck && f.ID == refused.ID {
			t.Fatalf("refused frame %s was acked", refused.ID)
		}
	}
}

// TestRepliesNeverDropAClient: a client whose replies pile up unread is not closed
// for them; the replies are all queued (a socket transport makes the reader wait).
func TestRepliesNeverDropAClient(t *testing.T) {
	e := newEnv(t, Options{RatePerSec: 1e6, RateBurst: 1e6}, hub.Options{})
	host, ht, _ := e.enter(t, "replies", "host@x.org")
	for i := range 50 {
		host.HandleFrame([]byte(fmt.Sprintf(`{"type":"nonsense","id":"n-%d"}`, i)))
	}
	if got := ht.count(wire.TypeError); got != 50 || ht.closeCode() != 0 {
		t.Fatalf("%d refusals, closed %d", got, ht.closeCode())
	}
}
