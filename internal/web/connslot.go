package web

import (
	"context"
	"net/http"
	"sync"
)

// connSlot is a person's counted WebSocket (limitConns). The WebSocket handler takes
// it over, since the connection outlives the handler (see serveWS), and gives it back
// when the connection ends; a request that did not become a connection gives it back
// when the handler returns.
type connSlot struct {
	once    sync.Once
	taken   bool
	release func()
}

type connSlotKey struct{}

// withConnSlot returns r carrying a slot that release gives back.
func withConnSlot(r *http.Request, release func()) (*http.Request, *connSlot) {
	slot := &connSlot{release: release}
	return r.WithContext(context.WithValue(r.Context(), connSlotKey{}, slot)), slot
}

// done gives the slot back unless the handler took it over.
func (s *connSlot) done() {
	if !s.taken {
		s.give()
	}
}

func (s *connSlot) give() { s.once.Do(s.release) }

// takeConnSlot takes over r's slot and returns the func that gives it back (once);
// a no-op when the request carries none.
func takeConnSlot(r *http.Request) func() {
	slot, ok := r.Context().Value(connSlotKey{}).(*connSlot)
	if !ok {
		return func() {}
	}
	slot.taken = true
	return slot.give
}
