package redisbus

import (
	"context"
	"errors"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"parley/internal/chat"
)

// subscribeTimeout bounds how long Subscribe waits for Redis to confirm a
// subscription when the caller's context has no earlier deadline.
const subscribeTimeout = 5 * time.Second

// Tokens of the PINGs sent on the subscriber connection; the matching PONG proves that
// every command written before it (SUBSCRIBE, the resubscription after a reconnect)
// has been processed, because Redis answers one connection's commands in order.
const (
	tokenHealth    = "hc"
	tokenReconnect = "reconnect-"
	tokenBarrier   = "sub-"
)

// subscription is one local subscriber of a session.
type subscription struct {
	fn       func(chat.Event)
	canceled atomic.Bool
}

// channelSubs holds a channel's subscribers as an immutable slice, replaced on every
// change, so the receive loop can deliver without holding the lock.
type channelSubs struct {
	session string
	subs    []*subscription
}

// Subscribe registers fn for the session's events. The first local subscriber of a
// session makes the bus SUBSCRIBE to its channel; Subscribe returns only after Redis
// has confirmed it, so nothing published after Subscribe returns is missed. fn is
// called from the bus's one receive goroutine and must not block.
func (b *Bus) Subscribe(ctx context.Context, sessionID string, fn func(chat.Event)) (func(), error) {
	if b.closed.Load() {
		return nil, chat.Errorf(chat.EUnavailable, "redis bus is closed")
	}
	ch := b.channel(sessionID)
	s := &subscription{fn: fn}
	token, wait := b.newWaiter()
	b.mu.Lock()
	cs := b.channels[ch]
	if cs == nil {
		if err := b.ps.Subscribe(ctx, ch); err != nil {
			// go-redis records the channel even when the write fails; forget it
			// so that a reconnect does not subscribe it behind our back.
			_ = b.ps.Unsubscribe(ctx, ch)
			b.mu.Unlock()
			b.dropWaiter(token)
			return nil, chat.Wrap(chat.EUnavailable, err, "redis subscribe failed")
		}
		cs = &channelSubs{session: sessionID}
		b.channels[ch] = cs
	}
	cs.subs = append(cs.subs[:len(cs.subs):len(cs.subs)], s)
	b.mu.Unlock()
	cancel := sync.OnceFunc(func() { b.unsubscribe(ch, s) })
	if err := b.barrier(ctx, token, wait); err != nil {
		cancel()
		return nil, err
	}
	return cancel, nil
}

// barrier sends a PING with token on the subscriber connection and waits for its PONG.
func (b *Bus) barrier(ctx context.Context, token string, wait <-chan struct{}) error {
	ctx, cancel := context.WithTimeout(ctx, subscribeTimeout)
	defer cancel()
	if err := b.ps.Ping(ctx, token); err != nil {
		b.dropWaiter(token)
		return chat.Wrap(chat.EUnavailable, err, "redis subscribe failed")
	}
	select {
	case <-wait:
		return nil
	case <-ctx.Done():
		b.dropWaiter(token)
		return chat.Wrap(chat.EUnavailable, ctx.Err(), "redis did not confirm the subscription")
	}
}

// unsubscribe removes s; the last local subscriber of a channel UNSUBSCRIBEs it.
func (b *Bus) unsubscribe(ch string, s *subscription) {
	s.canceled.Store(true)
	b.mu.Lock()
	defer b.mu.Unlock()
	cs := b.channels[ch]
	if cs == nil {
		return
	}
	subs := make([]*subscription, 0, len(cs.subs))
	for _, x := range cs.subs {
		if x != s {
			subs = append(subs, x)
		}
	}
	cs.subs = subs
	if len(subs) > 0 {
		return
	}
	delete(b.channels, ch)
	if b.closed.Load() {
		return
	}
	ctx, cancel := context.WithTimeout(b.ctx, subscribeTimeout)
	defer cancel()
	if err := b.ps.Unsubscribe(ctx, ch); err != nil {
		// go-redis forgets the channel even when the write fails, so the next
		// reconnect does not subscribe it again; until then its messages are dropped.
		b.log.Warn("redis unsubscribe failed", "err", err)
	}
}

// Publish sends ev to every subscriber of ev.Session on every replica.
func (b *Bus) Publish(ctx context.Context, ev chat.Event) error {
	if err := b.cmd.Publish(ctx, b.channel(ev.Session), encodeEvent(ev)).Err(); err != nil {
		return chat.Wrap(chat.EUnavailable, err, "redis publish failed")
	}
	return nil
}

// OnReconnect registers fn to be called, on its own goroutine, each time the subscriber
// connection is back (and resubscribed) after being lost.
func (b *Bus) OnReconnect(fn func()) {
	b.mu.Lock()
	b.reconnectFn = append(b.reconnectFn, fn)
	b.mu.Unlock()
}

// receiveLoop is the one reader of the subscriber connection. It delivers messages,
// wakes Subscribe barriers, and after a loss sends a reconnect PING: its PONG comes
// after the resubscription go-redis performs on the new connection, so the
// OnReconnect callbacks run only once messages flow again.
func (b *Bus) receiveLoop() {
	defer b.wg.Done()
	var token string // pending reconnect token, "" when none was sent
	var tokenDial uint64
	failures := 0
	for b.ctx.Err() == nil {
		if b.lost.Load() && (token == "" || tokenDial != b.dials.Load()) {
			tokenDial = b.dials.Load()
			token = tokenReconnect + strconv.FormatUint(tokenDial, 10)
			if err := b.ps.Ping(b.ctx, token); err != nil {
				token = ""
				failures++
				sleepCtx(b.ctx, backoff(failures))
				continue
			}
		}
		msg, err := b.ps.ReceiveTimeout(b.ctx, 3*b.health)
		if err != nil {
			if b.closed.Load() || errors.Is(err, redis.ErrClosed) {
				return
			}
			b.noteLoss(err)
			token = ""
			failures++
			sleepCtx(b.ctx, backoff(failures))
			continue
		}
		failures = 0
		switch m := msg.(type) {
		case *redis.Message:
			b.dispatch(m)
		case *redis.Pong:
			if token != "" && m.Payload == token {
				token = ""
				b.reconnected()
			} else {
				b.wake(m.Payload)
			}
		}
	}
}

// noteLoss marks the subscriber connection lost. A read that timed out means the
// connection stayed silent despite health pings: its socket is closed so that the
// next read fails and go-redis dials a new connection.
func (b *Bus) noteLoss(err error) {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		if c := b.subConn.Load(); c != nil {
			_ = (*c).Close()
		}
	}
	if !b.lost.Swap(true) {
		b.log.Warn("redis subscriber connection lost", "err", err)
	}
}

// reconnected clears the lost state and runs the OnReconnect callbacks.
func (b *Bus) reconnected() {
	b.lost.Store(false)
	b.mu.Lock()
	fns := append([]func(){}, b.reconnectFn...)
	b.mu.Unlock()
	b.log.Info("redis subscriber connection restored", "callbacks", len(fns))
	go func() {
		for _, fn := range fns {
			fn()
		}
	}()
}

// dispatch delivers one message to the channel's local subscribers, in order.
func (b *Bus) dispatch(m *redis.Message) {
	b.mu.Lock()
	cs := b.channels[m.Channel]
	var session string
	var subs []*subscription
	if cs != nil {
		session, subs = cs.session, cs.subs
	}
	b.mu.Unlock()
	if len(subs) == 0 {
		return // unsubscribed meanwhile
	}
	ev, err := decodeEvent(session, []byte(m.Payload))
	if err != nil {
		b.log.Warn("dropped a malformed event", "err", err)
		return
	}
	for _, s := range subs {
		if !s.canceled.Load() {
			s.fn(ev)
		}
	}
}

// healthLoop pings the subscriber connection so that a silent connection is noticed
// (see noteLoss) and reconnections are observed promptly.
func (b *Bus) healthLoop() {
	defer b.wg.Done()
	t := time.NewTicker(b.health)
	defer t.Stop()
	for {
		select {
		case <-b.ctx.Done():
			return
		case <-t.C:
			ctx, cancel := context.WithTimeout(b.ctx, b.health)
			_ = b.ps.Ping(ctx, tokenHealth) // a failed write makes go-redis reconnect
			cancel()
		}
	}
}

// newWaiter returns a fresh barrier token and the channel closed when its PONG arrives.
func (b *Bus) newWaiter() (string, <-chan struct{}) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.nextID++
	token := tokenBarrier + strconv.FormatUint(b.nextID, 10)
	ch := make(chan struct{})
	b.waiters[token] = ch
	return token, ch
}

func (b *Bus) dropWaiter(token string) {
	b.mu.Lock()
	delete(b.waiters, token)
	b.mu.Unlock()
}

// wake closes the waiter of a barrier PONG.
func (b *Bus) wake(payload string) {
	if !strings.HasPrefix(payload, tokenBarrier) {
		return
	}
	b.mu.Lock()
	ch := b.waiters[payload]
	delete(b.waiters, payload)
	b.mu.Unlock()
	if ch != nil {
		close(ch)
	}
}

// backoff is the pause after the n-th consecutive failure: none after the first
// (go-redis has usually reconnected already), then doubling up to two seconds.
func backoff(n int) time.Duration {
	if n <= 1 {
		return 0
	}
	d := 50 * time.Millisecond << min(n-2, 6)
	return min(d, 2*time.Second)
}
