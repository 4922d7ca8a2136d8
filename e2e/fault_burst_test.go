package e2e

import (
	"fmt"
	"testing"
	"time"
)

// TestFaultBurst: two people on the default limits (20 messages a second, bursts of
// 40) each send 1,000 messages at once, as a client resending a long backlog after a
// reconnect does. The server slows them to their rate instead of refusing: every
// message is stored and shown to both exactly once, in order, each sender gets every
// ack, nobody gets an error, and no connection is closed.
func TestFaultBurst(t *testing.T) {
	t.Parallel()
	const each = 1000
	srv := startServer(t, t.TempDir())
	pr := enterPair(t, srv, srv, "burst")
	start := time.Now()
	aw, bw := pr.a.sendMany("a", each), pr.b.sendMany("b", each)
	pr.watch()
	annSent, bobSent := map[string]time.Time{}, map[string]time.Time{}
	for i := range each {
		annSent[fmt.Sprintf("a-%d", i)] = start
		bobSent[fmt.Sprintf("b-%d", i)] = start
	}
	pr.settle(t, annSent, bobSent, 2*time.Minute)
	for who, w := range map[string]<-chan sendResult{"ann": aw, "bob": bw} {
		if r := <-w; r.err != nil {
			t.Fatalf("%s's burst: %d written, then %v", who, r.sent, r.err)
		}
	}
	t.Logf("%d messages, sent at once, all acked and shown on both screens in %s", 2*each, time.Since(start).Round(time.Millisecond))

	// The store holds them: a new connection replays seq 1..2000.
	replay, w := pr.ann.mustDial("")
	if w.LastSeq != 2*each {
		t.Fatalf("a new connection's welcome says last_seq %d, want %d", w.LastSeq, 2*each)
	}
	checkOnce(t, "the replay", replay.messagesUntil(2*each), 1, 2*each)
}
