package hub

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"parley/internal/chat"
)

// session is one chat session with local connections. It turns the broker's events
// into one ordered stream: next is the seq it delivers next; a message ahead of next
// is held for GapWait and then the gap is read from the store; one behind next is a
// duplicate and dropped. Every frame is encoded once here, not once per connection.
type session struct {
	h        *Hub
	id       string
	refs     int           // guarded by h.mu
	ready    chan struct{} // closed once started
	startErr error
	cancel   func()
	// ended is set by the session's ended event (or by a connection that read the
	// ended row), before the ended frame goes out: a client that has seen the frame
	// and sends is refused without a store read.
	ended atomic.Bool

	mu      sync.Mutex
	next    int64 // 0 until started
	held    map[int64][]byte
	timer   *time.Timer
	armed   bool // a gap fill is scheduled
	filling bool
	refill  bool
	stopped bool
	endSent bool // the ended frame went out to the local connections
	// transcriptSent: the transcript frame went out here; one is enough.
	transcriptSent bool
	// presence is the last presence state told here per person: the same state
	// again (a locally announced event's broker copy, a watch finding) is dropped.
	presence map[string]bool
	// told counts the presence events broadcast here per person, so a presence
	// read that one of them overtook is not told after it (Member.TellPresence).
	told map[string]uint64
	// signals is the stamp of the last typing and receipt event told here per person:
	// the broker's copy of one told here first (Hub.Tell) is dropped.
	// Made on first use.
	signals map[signalKey]int64
	// clients are the local connections: a slice, as a chat has two people with a
	// connection or a few each, and every message walks it.
	clients []*client
}

// newPresence reports whether ev tells the local connections something new, and
// records it. s.mu must be held.
func (s *session) newPresence(ev chat.Event) bool {
	if was, ok := s.presence[ev.Email]; ok && was == ev.Online {
		return false
	}
	if s.presence == nil {
		s.presence = make(map[string]bool, 2)
	}
	s.presence[ev.Email] = ev.Online
	return true
}

// signalKey names whose signal of which kind a stamp is.
type signalKey struct {
	typ   chat.EventType
	email string
}

// newSignal reports whether ev (a typing or receipt event) has not been told here
// yet, and records it. An event without a stamp is always new. s.mu must be held.
func (s *session) newSignal(ev chat.Event) bool {
	if ev.Seq == 0 {
		return true
	}
	k := signalKey{ev.Type, ev.Email}
	if s.signals[k] == ev.Seq {
		return false
	}
	if s.signals == nil {
		s.signals = make(map[signalKey]int64, 2)
	}
	s.signals[k] = ev.Seq
	return true
}

// firstEnd marks the session ended and reports whether its ended frame is yet to go
// out here. s.mu must be held.
func (s *session) firstEnd() bool {
	s.ended.Store(true)
	first := !s.endSent
	s.endSent = true
	return first
}

func newSession(h *Hub, id string) *session {
	return &session{
		h: h, id: id, ready: make(chan struct{}),
		held: make(map[int64][]byte),
	}
}

func (s *session) lock()   { s.mu.Lock() }
func (s *session) unlock() { s.mu.Unlock() }

// subscribeTimeout bounds subscribing to a session's events. A broker that does not
// answer in time (Redis down or hung) keeps nobody out of a chat: the session
// starts without a subscription, is read from the store on every broker health
// check, and subscribes when the broker answers again (resubscribe).
const subscribeTimeout = time.Second

// start subscribes and then reads the last stored seq. Subscribing first means no
// message can slip between the two: anything published meanwhile is either held
// (newer) or already stored (older, and replayed to connections from the store).
func (s *session) start(ctx context.Context) {
	defer close(s.ready)
	cancel, err := s.subscribe()
	if err != nil {
		s.h.log.Warn("cannot follow a chat through the broker; reading it from the store until the broker answers",
			"session", s.id, "err", err)
	}
	sctx, done := context.WithTimeout(ctx, storeTimeout)
	defer done()
	last, err := s.h.opts.Messages.LastSeq(sctx, s.id)
	if err != nil {
		if cancel != nil {
			cancel()
		}
		s.startErr = chat.Wrap(chat.ErrorCode(err), err, "cannot read the chat right now")
		return
	}
	s.lock()
	s.cancel = cancel
	s.next = last + 1
	s.deliverHeld()
	s.unlock()
}

// subscribe subscribes to the session's events, giving up after subscribeTimeout
// even if the broker's client does not (a Redis client may wait out its own read
// timeout first); a subscription that succeeds after that is cancelled.
func (s *session) subscribe() (func(), error) {
	ctx, done := context.WithTimeout(s.h.ctx, subscribeTimeout)
	defer done() // only once a result is taken: the goroutine may still run with ctx
	type result struct {
		cancel func()
		err    error
	}
	ch := make(chan result, 1)
	go func() {
		cancel, err := s.h.opts.Broker.Subscribe(ctx, s.id, s.onEvent)
		ch <- result{cancel, err}
	}()
	select {
	case r := <-ch:
		return r.cancel, r.err
	case <-ctx.Done():
		go func() { // too late: undo it when it returns
			if r := <-ch; r.err == nil {
				r.cancel()
			}
		}()
		return nil, ctx.Err()
	}
}

// resubscribe subscribes a session that started without a subscription, then reads
// what it may have missed from the store. It reports whether the session is
// subscribed now (or stopped: nothing to do).
func (s *session) resubscribe() bool {
	<-s.ready
	s.lock()
	need := s.cancel == nil && !s.stopped && s.startErr == nil
	s.unlock()
	if !need {
		return true
	}
	cancel, err := s.subscribe()
	if err != nil {
		return false
	}
	s.lock()
	if s.stopped || s.cancel != nil {
		s.unlock()
		cancel()
		return true
	}
	s.cancel = cancel
	s.unlock()
	s.h.log.Info("following a chat through the broker again", "session", s.id)
	s.catchUp()
	return true
}

// stop cancels the subscription and any pending gap fill.
func (s *session) stop() {
	<-s.ready
	s.lock()
	s.stopped = true
	if s.timer != nil {
		s.timer.Stop()
	}
	cancel := s.cancel
	s.unlock()
	if cancel != nil {
		cancel()
	}
}

// onEvent receives the broker's events for the session. It never blocks for long:
// it only sorts and queues frames.
func (s *session) onEvent(ev chat.Event) {
	s.lock()
	defer s.unlock()
	if ev.Type != chat.EventMessage {
		if ev.Type == chat.EventEnded && !s.firstEnd() {
			return // announced here already
		}
		if ev.Type == chat.EventTranscript {
			if s.transcriptSent {
				return // a repeated export, or a catch-up that found it
			}
			s.transcriptSent = true
		}
		if ev.Type == chat.EventPresence && !s.newPresence(ev) {
			return
		}
		if (ev.Type == chat.EventTyping || ev.Type == chat.EventReceipt) && !s.newSignal(ev) {
			return // told here already
		}
		s.broadcast(ev)
		return
	}
	if s.next == 0 || ev.Seq > s.next {
		s.held[ev.Seq] = ev.Frame // not started yet, or ahead of a gap
		s.deliverHeld()
		return
	}
	if ev.Seq == s.next {
		s.deliverNext(ev.Frame)
		s.deliverHeld()
	}
	// ev.Seq < s.next: a duplicate, already delivered
}

// deliverNext hands the frame of seq next to every client and moves on.
func (s *session) deliverNext(frame []byte) {
	n := 0
	for _, c := range s.clients {
		if c.message(s.next, frame, s.h.opts.MaxBuffered) {
			n++
		}
	}
	s.h.opts.Metrics.Delivered(n)
	s.next++
}

// deliverHeld delivers held frames that are now in order, forgets stale ones, and
// arms the gap timer while anything is still held.
func (s *session) deliverHeld() {
	if s.next == 0 {
		return
	}
	if len(s.held) == 0 { // the usual case: messages arrive in order
		if s.armed {
			s.armTimer()
		}
		return
	}
	for {
		frame, ok := s.held[s.next]
		if !ok {
			break
		}
		delete(s.held, s.next)
		s.deliverNext(frame)
	}
	for seq := range s.held {
		if seq < s.next {
			delete(s.held, seq)
		}
	}
	if len(s.held) > s.h.opts.MaxBuffered {
		go s.fill() // far behind: do not wait
	}
	s.armTimer()
}

// armTimer schedules a gap fill if something is held and none is scheduled. A
// scheduled fill is never postponed, so steady traffic cannot starve it.
func (s *session) armTimer() {
	switch {
	case len(s.held) == 0 || s.stopped:
		if s.armed {
			s.timer.Stop()
			s.armed = false
		}
	case s.armed:
	case s.timer == nil:
		s.timer = time.AfterFunc(s.h.opts.GapWait, s.onTimer)
		s.armed = true
	default:
		s.timer.Reset(s.h.opts.GapWait)
		s.armed = true
	}
}

func (s *session) onTimer() {
	s.lock()
	s.armed = false
	s.unlock()
	s.fill()
}

// broadcast sends a non-message event to every client, except presence and typing
// events to the person they are about (typing reaches only the other person).
func (s *session) broadcast(ev chat.Event) {
	if ev.Type == chat.EventPresence {
		if s.told == nil {
			s.told = make(map[string]uint64, 2)
		}
		s.told[ev.Email]++
	}
	for _, c := range s.clients {
		if (ev.Type == chat.EventPresence || ev.Type == chat.EventTyping) && ev.Email == c.email {
			continue
		}
		c.other(ev.Frame, s.h.opts.MaxBuffered)
	}
}

// fill reads the messages after next-1 from the store and delivers them, page by
// page, until the store has nothing newer. One fill runs at a time; a fill asked for
// while one runs makes it read once more.
func (s *session) fill() {
	s.lock()
	if s.filling || s.stopped || s.next == 0 {
		s.refill = s.filling
		s.unlock()
		return
	}
	s.filling = true
	for {
		s.refill = false
		after := s.next - 1
		s.unlock()
		msgs, err := s.readPage(after)
		s.lock()
		if err != nil || s.stopped {
			if err != nil {
				s.h.log.Warn("cannot fill a message gap from the store; retrying", "session", s.id, "err", err)
			}
			break
		}
		for _, m := range msgs {
			if m.Seq == s.next {
				s.deliverNext(s.h.opts.Encode(m))
			}
		}
		if len(msgs) < s.h.opts.PageSize && !s.refill {
			break
		}
	}
	s.filling = false
	s.deliverHeld() // delivers what the fill made contiguous; re-arms the timer if a gap remains
	s.unlock()
}

// catchUp reads what the broker may have missed from the store: the messages, and
// (with a StoreCheck) whether the chat has ended or its transcript is ready, until
// the transcript frame has gone out here.
func (s *session) catchUp() {
	s.fill()
	check := s.h.check.Load()
	s.lock()
	done := s.transcriptSent || s.stopped || s.next == 0
	s.unlock()
	if check == nil || done {
		return
	}
	ctx, cancel := context.WithTimeout(s.h.ctx, storeTimeout)
	evs, err := (*check)(ctx, s.id)
	cancel()
	if err != nil {
		s.h.log.Warn("cannot read the chat's state from the store; retrying", "session", s.id, "err", err)
		return
	}
	for _, ev := range evs {
		s.onEvent(ev)
	}
}

func (s *session) readPage(after int64) ([]chat.Message, error) {
	ctx, cancel := context.WithTimeout(s.h.ctx, storeTimeout)
	defer cancel()
	return s.h.opts.Messages.Messages(ctx, s.id, after, s.h.opts.PageSize)
}

func (s *session) add(c *client) {
	s.lock()
	s.clients = append(s.clients, c)
	s.unlock()
}

func (s *session) remove(c *client) {
	s.lock()
	for i, x := range s.clients {
		if x == c {
			last := len(s.clients) - 1
			s.clients[i], s.clients[last] = s.clients[last], nil
			s.clients = s.clients[:last]
			break
		}
	}
	s.unlock()
}
