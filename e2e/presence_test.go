package e2e

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"parley/internal/hub"
	"parley/internal/testenv"
)

// TestPresenceEnteringTogether: in many chats at once, ann connects to replica A and
// bob to replica B at the same moment. Each must be shown the other online, and stay
// so: a presence read made while the other was still connecting must not arrive after
// the other's "online" and undo it.
func TestPresenceEnteringTogether(t *testing.T) {
	t.Parallel()
	c := newCluster(t, "mariadb")
	a1, b1 := c.replica(), c.replica()
	const pairs = 15
	type side struct {
		p    *person
		peer string
		s    *screen
	}
	sides := make([]*side, 0, 2*pairs)
	for i := range pairs {
		room := fmt.Sprintf("together-%d", i)
		ann := join(t, a1.URL, room, testenv.UniqueName(t, "ann")+"@example.org")
		bob := join(t, a1.URL, room, testenv.UniqueName(t, "bob")+"@example.org").on(b1)
		sides = append(sides, &side{p: ann, peer: bob.email}, &side{p: bob, peer: ann.email})
	}
	start := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan error, len(sides))
	for _, sd := range sides {
		wg.Go(func() {
			<-start
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			conn, err := sd.p.dial(ctx, "")
			if err != nil {
				errs <- fmt.Errorf("%s: dial: %w", sd.p.email, err)
				return
			}
			sd.s = watch(sd.p.email, conn)
		})
	}
	close(start)
	wg.Wait()
	connected := time.Now()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	online := func(sd *side) func(*screen) bool {
		return func(s *screen) bool { return s.online[sd.peer] }
	}
	for _, sd := range sides {
		sd.s.waitUntil(t, sd.peer+" online", 3*time.Second, online(sd))
	}
	// Every presence read of the entering connections ends within hub.PresenceTimeout
	// of connecting; what each screen shows after that is its last word.
	time.Sleep(time.Until(connected.Add(hub.PresenceTimeout + 500*time.Millisecond)))
	for _, sd := range sides {
		sd.s.mu.Lock()
		if !sd.s.online[sd.peer] {
			t.Errorf("%s was shown %s online, then offline", sd.p.email, sd.peer)
		}
		sd.s.mu.Unlock()
	}
}
