package membus

import (
	"context"
	"sync"

	"parley/internal/chat"
)

// Presence counts each person's open connections per session in this process. With a
// single replica the counts die with the process, so nothing needs to expire.
type Presence struct {
	mu     sync.Mutex
	counts map[presenceKey]int
}

type presenceKey struct{ session, email string }

var _ chat.Presence = (*Presence)(nil)

// NewPresence returns an empty Presence.
func NewPresence() *Presence { return &Presence{counts: make(map[presenceKey]int)} }

// Connected counts one more connection of email to the session.
func (p *Presence) Connected(ctx context.Context, sessionID, email string) (bool, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	k := presenceKey{sessionID, email}
	p.counts[k]++
	return p.counts[k] == 1, nil
}

// Disconnected counts one connection fewer; it never goes below zero.
func (p *Presence) Disconnected(ctx context.Context, sessionID, email string) (bool, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	k := presenceKey{sessionID, email}
	n := p.counts[k]
	if n <= 1 {
		delete(p.counts, k)
		return n == 1, nil
	}
	p.counts[k] = n - 1
	return false, nil
}

// Online reports whether email has a connection to the session.
func (p *Presence) Online(ctx context.Context, sessionID, email string) (bool, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.counts[presenceKey{sessionID, email}] > 0, nil
}

// Close releases nothing; it exists so every component can be closed alike.
func (p *Presence) Close() error { return nil }
