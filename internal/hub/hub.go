// Package hub keeps this replica's chat sessions and the WebSocket connections open to
// them, and delivers each session's events to its connections: messages in seq order,
// exactly once, with no gap, whatever order the broker hands them over in. The store
// is the truth; the broker only says "something new" quickly, and any gap it leaves
// is filled from the store.
package hub

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"parley/internal/chat"
	"parley/internal/metrics"
	"parley/internal/wire"
)

// Defaults for zero Options values.
const (
	DefaultGapWait     = 150 * time.Millisecond
	DefaultPageSize    = 500
	DefaultMaxBuffered = 4096
	storeTimeout       = 10 * time.Second
)

// ErrClosed is returned by Join once the hub is closed.
var ErrClosed = chat.Errorf(chat.EUnavailable, "the server is shutting down")

// Options are what a Hub needs.
type Options struct {
	Messages chat.MessageStore
	Broker   chat.Broker
	Logger   *slog.Logger
	// Encode turns a stored message into its message frame. The hub uses it for
	// messages it reads from the store itself (replay and gap filling); live ones
	// arrive already encoded in the broker's events.
	Encode func(chat.Message) []byte
	// GapWait is how long a message that arrived ahead of its predecessor is held
	// before the gap is filled from the store.
	GapWait time.Duration
	// PageSize is how many messages one store read returns during replay and filling.
	PageSize int
	// MaxBuffered bounds the frames held for a connection while it replays; a
	// connection that falls further behind is refused and reconnects.
	MaxBuffered int
	// Metrics counts the message frames delivered to connections; may be nil.
	Metrics *metrics.Metrics
	// Presence, when set, is watched for peers whose replica vanished without a
	// goodbye, every PresenceCheck (DefaultPresenceCheck; negative: never).
	Presence      chat.Presence
	PresenceCheck time.Duration
	// PublishTimeout bounds one broker publish (DefaultPublishTimeout), PublishQueue
	// the events waiting to be published (DefaultPublishQueue); see Publish.
	PublishTimeout time.Duration
	PublishQueue   int
	// HealthCheck is how often the broker is pinged (DefaultHealthCheck); while it
	// does not answer, sessions with local connections are read from the store at
	// that pace, so nothing stored waits for the broker to come back.
	HealthCheck time.Duration
}

// Hub maps this replica's sessions to their connections. It subscribes to the broker
// for a session when its first local connection joins and cancels when the last leaves.
type Hub struct {
	opts   Options
	log    *slog.Logger
	ctx    context.Context // lives until Close; subscriptions and gap fills use it
	cancel context.CancelFunc

	watch   *presenceWatch
	pub     *publisher
	healthy *brokerHealth
	check   atomic.Pointer[StoreCheck]

	mu       sync.Mutex
	sessions map[string]*session
	closed   bool
}

// New returns a Hub and registers it with the broker to catch up after reconnects.
func New(o Options) *Hub {
	chat.SetDefault(&o.GapWait, DefaultGapWait)
	chat.SetDefault(&o.PageSize, DefaultPageSize)
	chat.SetDefault(&o.MaxBuffered, DefaultMaxBuffered)
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if o.PresenceCheck == 0 {
		o.PresenceCheck = DefaultPresenceCheck
	}
	if o.Encode == nil {
		o.Encode = wire.Message
	}
	ctx, cancel := context.WithCancel(context.Background())
	h := &Hub{opts: o, log: log, ctx: ctx, cancel: cancel, sessions: make(map[string]*session)}
	h.watch = newPresenceWatch(o.Presence, log, o.PresenceCheck)
	raw := o.Broker
	h.opts.Broker = h.watch.broker(raw)
	h.pub = newPublisher(raw, log, o.Metrics, o.PublishTimeout, o.PublishQueue)
	h.healthy = newBrokerHealth(h, raw, o.HealthCheck)
	if raw != nil {
		raw.OnReconnect(h.catchUp)
	}
	return h
}

// Join describes a connection joining a session.
type Join struct {
	Session string
	Email   string // the person; they are not sent their own presence changes
	Peer    string // the other person, when known, whose presence is watched
	After   int64  // replay stored messages with seq > After
	To      Sender // live frames go here once the replay is done
	// Replay writes one replayed frame straight to the connection. It may block: the
	// replay is paced by the connection, not dropped.
	Replay func(frame []byte) error
	// Window is how many frames To can take at once (its free queue length). When more
	// live messages than this arrived during the replay, they are replayed from the
	// store too instead of being pushed into To all at once. Default 16.
	Window int
}

// Member is a connection's place in a session; Leave takes it out.
type Member struct {
	h    *Hub
	s    *session
	c    *client
	once sync.Once
}

// Join subscribes to the session if this is its first local connection, replays the
// stored messages with seq > j.After through j.Replay, and then switches the
// connection to live delivery. Messages stored during the replay are delivered once,
// in order: live frames are held while the replay runs and those already replayed
// are dropped.
func (h *Hub) Join(ctx context.Context, j Join) (*Member, error) {
	s, err := h.acquire(ctx, j.Session)
	if err != nil {
		return nil, err
	}
	chat.SetDefault(&j.Window, 16)
	c := &client{email: j.Email, to: j.To, replaying: true, lastSeq: j.After, window: j.Window}
	s.add(c)
	if err := s.replay(ctx, c, j.Replay); err != nil {
		s.remove(c)
		h.release(s)
		return nil, err
	}
	h.watch.joined(j.Session, j.Email, j.Peer)
	return &Member{h: h, s: s, c: c}, nil
}

// Ended reports whether the session is known to have ended: its ended event reached
// this replica (every replica hears it through the broker), or a connection called
// MarkEnded. Connections check it instead of reading the session row for every
// message. A message sent while the end is still on its way (microseconds on one
// replica, a broker hop across replicas) may be stored just after the end; a
// connection that must be sure reads the row.
func (m *Member) Ended() bool { return m.s.ended.Load() }

// MarkEnded records that the session has ended, for every local connection of it: a
// connection read the ended row (it attached after the ended event went by) or ended
// the chat itself.
func (m *Member) MarkEnded() { m.s.ended.Store(true) }

// Deliver hands a message this replica has just stored to the session's local
// connections at once, as if the broker had brought it: the sender gets its own
// message (with its ack, under SendQueue.Hold) without waiting for the broker's round
// trip, and the broker's copy, arriving later, is a duplicate and dropped. Call it
// before publishing, with the message's seq and frame.
func (m *Member) Deliver(seq int64, frame []byte) {
	m.s.onEvent(chat.Event{Type: chat.EventMessage, Session: m.s.id, Seq: seq, Frame: frame})
}

// Announce hands an event this replica has just produced (presence, ended) to the
// session's local connections at once, before it is published for the other
// replicas: nothing local waits for the broker. The broker's copy is then dropped:
// a session ends once, and a presence event that repeats the state last told is not
// told again. (Typing and receipts go through Tell.)
func (m *Member) Announce(ev chat.Event) {
	m.s.lock()
	defer m.s.unlock()
	if ev.Type == chat.EventEnded && !m.s.firstEnd() {
		return
	}
	if ev.Type == chat.EventPresence && !m.s.newPresence(ev) {
		return
	}
	m.s.broadcast(ev)
}

// Tell hands ev, a signal this replica produced (typing, a receipt), to the session's local
// connections at once, as the broker would, if any are here; publish it afterwards
// for the other replicas. ev.Seq must be a stamp of its own: the broker's copy is
// then not told again. A hung or down broker so delays nothing on this replica.
func (h *Hub) Tell(ev chat.Event) {
	h.mu.Lock()
	s := h.sessions[ev.Session]
	h.mu.Unlock()
	if s != nil {
		s.onEvent(ev)
	}
}

// PresenceMark returns a mark of the presence events about email told to this
// session's local connections so far. Take it before reading email's presence from
// Presence, and hand it to TellPresence with the answer.
func (m *Member) PresenceMark(email string) uint64 {
	m.s.lock()
	defer m.s.unlock()
	return m.s.told[email]
}

// TellPresence sends this connection alone frame, saying email is online or not as
// read from Presence after mark was taken, unless a presence event about email
// reached the session since: that event went to this connection too and is at least
// as new as the read, which must not be told after it (a peer entering at the same
// moment would otherwise be shown offline until their next change). What it tells
// is what the presence watch compares its next reading with, so a peer's event the
// broker lost is made up for by the watch.
func (m *Member) TellPresence(email string, mark uint64, online bool, frame []byte) {
	m.s.lock()
	if m.s.told[email] != mark {
		m.s.unlock()
		return
	}
	m.c.other(frame, m.s.h.opts.MaxBuffered)
	m.s.unlock()
	m.h.watch.told(m.s.id, email, online)
}

// Given returns the highest message seq handed to this connection so far, replayed
// or live: a receipt up to it needs no store read to be believed.
func (m *Member) Given() int64 {
	m.s.lock()
	defer m.s.unlock()
	return m.c.lastSeq
}

// Leave removes the connection; the last one to leave a session ends its subscription.
func (m *Member) Leave() {
	m.once.Do(func() {
		m.h.watch.left(m.s.id, m.c.email)
		m.s.remove(m.c)
		m.h.release(m.s)
	})
}

// acquire returns the session's entry, creating and subscribing it when new.
func (h *Hub) acquire(ctx context.Context, id string) (*session, error) {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return nil, ErrClosed
	}
	s := h.sessions[id]
	created := s == nil
	if created {
		s = newSession(h, id)
		h.sessions[id] = s
	}
	s.refs++
	h.mu.Unlock()
	if created {
		s.start(ctx)
	}
	select {
	case <-s.ready:
	case <-ctx.Done():
		h.release(s)
		return nil, ctx.Err()
	}
	if s.startErr != nil {
		h.release(s)
		return nil, s.startErr
	}
	return s, nil
}

// release drops one reference; the last one stops the session's subscription.
func (h *Hub) release(s *session) {
	h.mu.Lock()
	s.refs--
	last := s.refs == 0
	if last && h.sessions[s.id] == s {
		delete(h.sessions, s.id)
	}
	h.mu.Unlock()
	if last {
		s.stop()
	}
}

// catchUp re-reads every local session from the store, for after a broker reconnect
// and while the broker does not answer: whatever was published while it was cut off
// is delivered now, messages and (through StoreCheck) the end of the chat.
func (h *Hub) catchUp() {
	for _, s := range h.sessionList() {
		go s.catchUp()
	}
}

// StoreCheck reads from the store what the broker may have failed to bring about a
// session besides its messages: the events that would tell its connections (the end
// of the chat, its transcript), or none.
type StoreCheck func(ctx context.Context, session string) ([]chat.Event, error)

// SetStoreCheck sets how the hub's catch-ups learn of the events of a session that
// are not messages (the chat layer reads the session row). Without it, catch-ups
// read messages only. Only the catch-ups call it, never the per-message path.
func (h *Hub) SetStoreCheck(fn StoreCheck) { h.check.Store(&fn) }

// InProcess reports whether the broker is in-process (or absent): then every event
// reaches this process's connections as it is published and none can be lost, so an
// ended chat is always known here (Member.Ended) without reading the session row.
func (h *Hub) InProcess() bool { return h.pub.instant }

// Sessions returns how many sessions have local connections (for metrics).
func (h *Hub) Sessions() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.sessions)
}

// PresenceObserved reports what this replica last saw of email's presence in a
// session with local connections, and whether it saw anything (tests, diagnostics).
func (h *Hub) PresenceObserved(session, email string) (online, seen bool) {
	return h.watch.Observed(session, email)
}

// Close cancels every subscription, stops the presence watch and the broker health
// checks, and publishes what is queued (each publish still bounded by its timeout).
// Connections are closed by their owners.
func (h *Hub) Close() error {
	_ = h.watch.Close()
	h.healthy.close()
	h.pub.close()
	h.mu.Lock()
	h.closed = true
	all := h.sessions
	h.sessions = make(map[string]*session)
	h.mu.Unlock()
	for _, s := range all {
		s.stop()
	}
	h.cancel()
	return nil
}

// sessionList returns the local sessions, so callers can work on them without the lock.
func (h *Hub) sessionList() []*session {
	h.mu.Lock()
	defer h.mu.Unlock()
	all := make([]*session, 0, len(h.sessions))
	for _, s := range h.sessions {
		all = append(all, s)
	}
	return all
}
