package room

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"testing"

	"parley/internal/hub"
	"parley/internal/membus"
	"parley/internal/wire"
)

// slowReads is Presence whose Online answers a moment after reading, as a remote
// presence backend does: the peer may connect, and be announced, in between.
type slowReads struct{ *membus.Presence }

func (p slowReads) Online(ctx context.Context, s, e string) (bool, error) {
	online, err := p.Presence.Online(ctx, s, e)
	for range 20 {
		runtime.Gosched()
	}
	return online, err
}

// lastPresence returns what the last presence frame about email said, if any.
func lastPresence(tr *transport, email string) (online, seen bool) {
	for _, f := range tr.all() {
		if f.Type == wire.TypePresence && f.Email == email {
			online, seen = f.Online, true
		}
	}
	return online, seen
}

// TestPeersEnteringTogetherSeeEachOther enters both people of many chats at the same
// moment: each must end up shown the other online, whatever order their presence
// reads and announcements run in.
func TestPeersEnteringTogetherSeeEachOther(t *testing.T) {
	p := slowReads{membus.NewPresence()}
	e := newEnv(t, Options{Presence: p}, hub.Options{Presence: p})
	const pairs = 40
	type side struct {
		email, peer string
		tr          *transport
	}
	sides := make([]side, 0, 2*pairs)
	for i := range pairs {
		room := fmt.Sprintf("together-%d", i)
		host, guest := fmt.Sprintf("host%d@x.org", i), fmt.Sprintf("guest%d@x.org", i)
		e.join(t, room, host)
		e.join(t, room, guest)
		sides = append(sides, side{host, guest, newTransport()}, side{guest, host, newTransport()})
	}
	start := make(chan struct{})
	clients := make([]*Client, len(sides))
	var wg sync.WaitGroup
	for i, s := range sides {
		wg.Go(func() {
			<-start
			ctx, cancel := context.WithCancel(context.Background())
			c, err := e.rooms.Enter(ctx, s.tr, Request{Email: s.email, Room: fmt.Sprintf("together-%d", i/2)})
			if err != nil {
				cancel()
				t.Errorf("%s entering: %v", s.email, err)
				return
			}
			clients[i] = c
			t.Cleanup(func() { cancel(); c.Leave() })
		})
	}
	close(start)
	wg.Wait()
	// Once every connection has read and announced presence, every frame about it
	// has gone out: the last one each person got must say the peer is online.
	for _, c := range clients {
		if c != nil {
			<-c.presenceDone
		}
	}
	bad := 0
	for _, s := range sides {
		if online, seen := lastPresence(s.tr, s.peer); !online {
			bad++
			t.Errorf("%s is not shown %s online (told anything: %v)", s.email, s.peer, seen)
		}
	}
	if bad > 0 {
		t.Errorf("%d of %d people not shown their peer online", bad, len(sides))
	}
}
