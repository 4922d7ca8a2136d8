package hub

import (
	"context"
	"log/slog"
	"slices"
	"sync"
	"time"

	"parley/internal/chat"
	"parley/internal/wire"
)

// DefaultPresenceCheck is how often a replica asks Presence whether the peers of its
// local connections are still online.
const DefaultPresenceCheck = 5 * time.Second

// PresenceTimeout bounds one Presence call, here and in the chat layer: presence is
// shown, never stored, so a slow presence backend (Redis hung) costs a stale "online"
// dot for a moment, never a stalled connection.
const PresenceTimeout = 1500 * time.Millisecond

// presenceWatch tells people that their peer went offline when nobody said goodbye:
// a replica that dies (SIGKILL, lost host) publishes no presence event, and its
// claims merely expire in Presence. One goroutine per server asks Presence, every
// PresenceCheck, about the people of each session with local connections who are not
// connected here, and delivers a presence event to the local connections when the
// answer differs from what it last saw. Presence events from the broker update what
// it has seen, so a clean goodbye is not told twice.
type presenceWatch struct {
	presence chat.Presence
	log      *slog.Logger
	every    time.Duration

	mu       sync.Mutex
	sessions map[string]*watched

	stop     chan struct{}
	done     chan struct{}
	stopOnce sync.Once
}

// watched is what the watch knows about one session with local connections or a hub
// subscription. Guarded by presenceWatch.mu.
// Slices, not maps: a chat has two people and one subscription per replica, and an
// idle replica holds one record per chat.
type watched struct {
	people []watchedPerson // everyone known to be in the session
	gen    uint64          // bumped by every presence event, so an older check loses
	subs   []*watchSub     // the hub's subscriptions, which deliver local events
}

// watchedPerson is one person of a watched session.
type watchedPerson struct {
	email  string
	local  int  // connections on this replica
	seen   bool // online is an observation: the last state seen while not connected here
	online bool
}

// find returns email's record, or nil.
func (s *watched) find(email string) *watchedPerson {
	for i := range s.people {
		if s.people[i].email == email {
			return &s.people[i]
		}
	}
	return nil
}

// person returns email's record, adding it.
func (s *watched) person(email string) *watchedPerson {
	if p := s.find(email); p != nil {
		return p
	}
	s.people = append(s.people, watchedPerson{email: email})
	return &s.people[len(s.people)-1]
}

// localTo reports whether email has a connection on this replica.
func (s *watched) localTo(email string) bool {
	p := s.find(email)
	return p != nil && p.local > 0
}

// anyLocal reports whether anyone has a connection on this replica.
func (s *watched) anyLocal() bool {
	for i := range s.people {
		if s.people[i].local > 0 {
			return true
		}
	}
	return false
}

// watchSub is one hub subscription: deliver hands an event to the hub's session.
type watchSub struct{ deliver func(chat.Event) }

// newPresenceWatch starts the watch; every <= 0 or a nil presence disables it.
func newPresenceWatch(p chat.Presence, log *slog.Logger, every time.Duration) *presenceWatch {
	w := &presenceWatch{presence: p, log: log, every: every, sessions: make(map[string]*watched),
		stop: make(chan struct{}), done: make(chan struct{})}
	if p == nil || every <= 0 {
		close(w.done)
		return w
	}
	go w.run()
	return w
}

// Close stops the watch and waits for its goroutine.
func (w *presenceWatch) Close() error {
	w.stopOnce.Do(func() { close(w.stop) })
	<-w.done
	return nil
}

func (w *presenceWatch) run() {
	defer close(w.done)
	chat.Every(w.stop, w.every, w.check)
}

// entry returns the session's record, creating it. Called with w.mu held.
func (w *presenceWatch) entry(id string) *watched {
	s := w.sessions[id]
	if s == nil {
		s = &watched{}
		w.sessions[id] = s
	}
	return s
}

// forget drops the session's record once nothing local refers to it. Called with w.mu held.
func (w *presenceWatch) forget(id string, s *watched) {
	if len(s.subs) == 0 && !s.anyLocal() {
		delete(w.sessions, id)
	}
}

// joined records a local connection of email to the session; peer is the other
// participant if known ("" while nobody else has entered).
func (w *presenceWatch) joined(session, email, peer string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	s := w.entry(session)
	s.person(email).local++
	if peer != "" {
		s.person(peer)
	}
}

// left records that a local connection closed.
func (w *presenceWatch) left(session, email string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	s := w.sessions[session]
	if s == nil {
		return
	}
	if p := s.find(email); p != nil {
		if p.local--; p.local <= 0 {
			p.local, p.seen, p.online = 0, false, false // not observed while local; unknown from now on
		}
	}
	w.forget(session, s)
}

// told records what a local connection was told of email's presence when it
// entered (read from Presence), so the next check delivers a reading that differs.
func (w *presenceWatch) told(session, email string, online bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	s := w.sessions[session]
	if s == nil || s.localTo(email) {
		return
	}
	p := s.person(email)
	p.seen, p.online = true, online
}

// Observed reports what the watch last saw of email's presence in the session, and
// whether it has seen anything (for tests and diagnostics).
func (w *presenceWatch) Observed(session, email string) (online, seen bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if s := w.sessions[session]; s != nil {
		if p := s.find(email); p != nil && p.seen {
			return p.online, true
		}
	}
	return false, false
}

// observe records a presence event from the broker.
func (w *presenceWatch) observe(ev chat.Event) {
	w.mu.Lock()
	defer w.mu.Unlock()
	s := w.sessions[ev.Session]
	if s == nil {
		return
	}
	s.gen++
	p := s.person(ev.Email)
	p.seen, p.online = true, ev.Online
}

// check asks Presence about every person not connected here and tells the local
// connections about each change.
func (w *presenceWatch) check() {
	type ask struct {
		session, email string
		gen            uint64
	}
	w.mu.Lock()
	var asks []ask
	for id, s := range w.sessions {
		if !s.anyLocal() {
			continue
		}
		for _, p := range s.people {
			if p.local == 0 {
				asks = append(asks, ask{id, p.email, s.gen})
			}
		}
	}
	w.mu.Unlock()
	for _, a := range asks {
		select {
		case <-w.stop:
			return
		default:
		}
		w.checkOne(a.session, a.email, a.gen)
	}
}

// checkOne reads one person's presence and delivers a change.
func (w *presenceWatch) checkOne(session, email string, gen uint64) {
	ctx, cancel := context.WithTimeout(context.Background(), PresenceTimeout)
	online, err := w.presence.Online(ctx, session, email)
	cancel()
	if err != nil {
		w.log.Warn("cannot read presence", "session", session, "err", err)
		return
	}
	w.mu.Lock()
	s := w.sessions[session]
	if s == nil || s.gen != gen || s.localTo(email) || !s.anyLocal() {
		w.mu.Unlock() // an event or a local connection says more than this answer
		return
	}
	p := s.person(email)
	before, seen := p.online, p.seen
	p.seen, p.online = true, online
	var subs []*watchSub
	if seen && before != online {
		subs = append(subs, s.subs...)
	}
	w.mu.Unlock()
	if len(subs) == 0 {
		return
	}
	ev := chat.Event{Type: chat.EventPresence, Session: session, Email: email, Online: online,
		Frame: wire.Presence(email, online)}
	for _, sub := range subs {
		sub.deliver(ev)
	}
}

// broker wraps b so the watch sees the hub's subscriptions and presence events.
func (w *presenceWatch) broker(b chat.Broker) chat.Broker {
	if b == nil {
		return nil
	}
	return watchedBroker{Broker: b, w: w}
}

// watchedBroker is the broker as the hub sees it: Subscribe is observed.
type watchedBroker struct {
	chat.Broker
	w *presenceWatch
}

// Subscribe subscribes through the real broker, noting presence events and keeping
// fn so the watch can deliver its own findings to the same hub session.
func (b watchedBroker) Subscribe(ctx context.Context, sessionID string, fn func(chat.Event)) (func(), error) {
	sub := &watchSub{deliver: fn}
	b.w.mu.Lock()
	s := b.w.entry(sessionID)
	s.subs = append(s.subs, sub)
	b.w.mu.Unlock()
	drop := func() {
		b.w.mu.Lock()
		if s := b.w.sessions[sessionID]; s != nil {
			if i := slices.Index(s.subs, sub); i >= 0 {
				s.subs = slices.Delete(s.subs, i, i+1)
			}
			b.w.forget(sessionID, s)
		}
		b.w.mu.Unlock()
	}
	cancel, err := b.Broker.Subscribe(ctx, sessionID, func(ev chat.Event) {
		if ev.Type == chat.EventPresence {
			b.w.observe(ev)
		}
		fn(ev)
	})
	if err != nil {
		drop()
		return nil, err
	}
	var once sync.Once
	return func() { once.Do(drop); cancel() }, nil
}
