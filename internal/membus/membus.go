// Package membus is the in-process fan-out: a chat.Broker and chat.Presence for a
// single replica. It is Parley's embedded default, not a test double, so it never
// loses or reorders an event: each subscription has its own unbounded queue, drained
// by a goroutine that runs only while events are waiting.
package membus

import (
	"context"
	"sync"
	"sync/atomic"

	"parley/internal/chat"
)

// Bus is an in-process chat.Broker: every event published for a session reaches every
// subscription of that session exactly once, in publish order.
type Bus struct {
	hubs   atomic.Int32 // hubs publishing through the bus (JoinHub)
	mu     sync.Mutex
	subs   map[string]map[*subscription]struct{}
	closed bool
}

var _ chat.Broker = (*Bus)(nil)

// New returns an empty Bus.
func New() *Bus { return &Bus{subs: make(map[string]map[*subscription]struct{})} }

// Subscribe calls fn for every event published for sessionID after it returns.
func (b *Bus) Subscribe(ctx context.Context, sessionID string, fn func(chat.Event)) (func(), error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil, chat.Errorf(chat.EUnavailable, "the message bus is closed")
	}
	s := &subscription{fn: fn}
	set := b.subs[sessionID]
	if set == nil {
		set = make(map[*subscription]struct{})
		b.subs[sessionID] = set
	}
	set[s] = struct{}{}
	return func() { b.unsubscribe(sessionID, s) }, nil
}

func (b *Bus) unsubscribe(sessionID string, s *subscription) {
	b.mu.Lock()
	if set := b.subs[sessionID]; set != nil {
		delete(set, s)
		if len(set) == 0 {
			delete(b.subs, sessionID)
		}
	}
	b.mu.Unlock()
	s.stop()
}

// Publish queues ev for every subscription of ev.Session. It never blocks on a
// subscriber. Publishes are ordered by the bus lock, so every subscriber sees the
// same order.
func (b *Bus) Publish(ctx context.Context, ev chat.Event) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return chat.Errorf(chat.EUnavailable, "the message bus is closed")
	}
	for s := range b.subs[ev.Session] {
		s.push(ev)
	}
	return nil
}

// PublishNeverBlocks marks Publish as never waiting on anything outside the process
// (hub.InstantBroker), so the hub publishes directly instead of through its queue.
func (b *Bus) PublishNeverBlocks() {}

// JoinHub counts a hub on the bus until leave is called (hub.SharedBroker): a hub
// alone on it does not publish the messages it has delivered itself.
func (b *Bus) JoinHub() (leave func()) {
	b.hubs.Add(1)
	var once sync.Once
	return func() { once.Do(func() { b.hubs.Add(-1) }) }
}

// Hubs is how many hubs have joined the bus and not left it.
func (b *Bus) Hubs() int { return int(b.hubs.Load()) }

// OnReconnect does nothing: an in-process bus is never disconnected.
func (b *Bus) OnReconnect(fn func()) {}

// Ping always succeeds while the bus is open.
func (b *Bus) Ping(ctx context.Context) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return chat.Errorf(chat.EUnavailable, "the message bus is closed")
	}
	return nil
}

// Close stops every subscription; later calls fail with EUnavailable.
func (b *Bus) Close() error {
	b.mu.Lock()
	var all []*subscription
	for _, set := range b.subs {
		for s := range set {
			all = append(all, s)
		}
	}
	b.subs = make(map[string]map[*subscription]struct{})
	b.closed = true
	b.mu.Unlock()
	for _, s := range all {
		s.stop()
	}
	return nil
}

// subscription is one subscriber's queue. A drain goroutine is started when the queue
// becomes non-empty and exits when it is empty again, so an idle subscription costs
// no goroutine.
type subscription struct {
	fn       func(chat.Event)
	mu       sync.Mutex
	queue    []chat.Event
	draining bool
	stopped  bool
}

func (s *subscription) push(ev chat.Event) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return
	}
	s.queue = append(s.queue, ev)
	if !s.draining {
		s.draining = true
		go s.drain()
	}
}

// drain delivers queued events one at a time, in order, from a single goroutine.
func (s *subscription) drain() {
	for {
		s.mu.Lock()
		if s.stopped || len(s.queue) == 0 {
			s.queue = nil
			s.draining = false
			s.mu.Unlock()
			return
		}
		ev := s.queue[0]
		s.queue[0] = chat.Event{}
		s.queue = s.queue[1:]
		s.mu.Unlock()
		s.fn(ev)
	}
}

// stop ends delivery; an event being delivered right now still completes.
func (s *subscription) stop() {
	s.mu.Lock()
	s.stopped = true
	s.queue = nil
	s.mu.Unlock()
}
