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

// Tokens of the PINGs sent on a subscriber connection; the matching PONG proves that
// every command written before it (a SUBSCRIBE) has been processed, because Redis
// answers one connection's commands in order.
const (
	tokenHealth  = "hc"
	tokenStart   = "start"
	tokenBarrier = "sub-"
)

// errReplaced refuses a second dial of a node's connection: go-redis would otherwise
// reconnect a PubSub by itself and resubscribe behind the bus's back, to a node that
// may no longer own the channels, and without the OnReconnect catch-up.
var errReplaced = errors.New("redisbus: a lost subscriber connection is replaced, not redialed")

// subscription is one local subscriber of a session.
type subscription struct {
	fn       func(chat.Event)
	canceled atomic.Bool
}

// channelSubs holds a channel's subscribers as an immutable slice, replaced on every
// change, so the receive loop can deliver without holding the lock, and the connection
// the channel is subscribed on (nil or dead while it waits to be moved).
type channelSubs struct {
	session string
	subs    []*subscription
	node    *node
}

// node is one subscriber connection, to one Redis node: the server itself, or a
// cluster master holding the channels of the chats in its slots.
type node struct {
	b      *Bus
	addr   string
	client *redis.Client
	ps     *redis.PubSub
	conn   atomic.Pointer[net.Conn] // its socket, set by the one dial allowed
	dead   atomic.Bool
	ctx    context.Context
	cancel context.CancelFunc

	// unsubs counts the (S)UNSUBSCRIBEs written per channel whose confirmation has not
	// arrived, so the receive loop tells them from a server dropping the channel.
	unsubMu sync.Mutex
	unsubs  map[string]int
}

// nodeFor returns the live subscriber connection to addr, opening it if needed.
// Call with b.ctl held.
func (b *Bus) nodeFor(ctx context.Context, addr string) (*node, error) {
	b.mu.Lock()
	n := b.nodes[addr]
	b.mu.Unlock()
	if n != nil && !n.dead.Load() {
		return n, nil
	}
	n = &node{b: b}
	o := b.rc.NodeOptions(addr)
	n.addr = addr
	o.ClientName = "parley-sub-" + b.replica
	dial := o.Dialer
	if dial == nil {
		dial = redis.NewDialer(o)
	}
	o.Dialer = func(ctx context.Context, network, a string) (net.Conn, error) {
		if n.conn.Load() != nil {
			return nil, errReplaced
		}
		c, err := dial(ctx, network, a)
		if err == nil && !n.conn.CompareAndSwap(nil, &c) {
			_ = c.Close()
			return nil, errReplaced
		}
		return c, err
	}
	n.client = redis.NewClient(o)
	n.ps = n.client.Subscribe(ctx)
	if err := n.ps.Ping(ctx, tokenStart); err != nil {
		_ = n.ps.Close()
		_ = n.client.Close()
		return nil, chat.Wrap(chat.EUnavailable, err, "redis subscriber connection failed")
	}
	n.ctx, n.cancel = context.WithCancel(b.ctx)
	b.mu.Lock()
	if b.closed.Load() {
		b.mu.Unlock()
		n.close()
		return nil, chat.Errorf(chat.EUnavailable, "redis bus is closed")
	}
	b.nodes[addr] = n
	b.wg.Add(2)
	b.mu.Unlock()
	go n.receiveLoop()
	go n.healthLoop()
	return n, nil
}

// close shuts the connection; its loops end.
func (n *node) close() {
	n.dead.Store(true)
	if n.cancel != nil {
		n.cancel()
	}
	_ = n.ps.Close()
	_ = n.client.Close()
}

// subscribe writes (S)SUBSCRIBE ch on the connection.
func (n *node) subscribe(ctx context.Context, ch string) error {
	if n.b.sharded {
		return n.ps.SSubscribe(ctx, ch)
	}
	return n.ps.Subscribe(ctx, ch)
}

func (n *node) unsubscribe(ctx context.Context, ch string) error {
	n.unsubMu.Lock()
	if n.unsubs == nil {
		n.unsubs = make(map[string]int)
	}
	n.unsubs[ch]++
	n.unsubMu.Unlock()
	if n.b.sharded {
		return n.ps.SUnsubscribe(ctx, ch)
	}
	return n.ps.Unsubscribe(ctx, ch)
}

// Subscribe registers fn for the session's events. The first local subscriber of a
// session makes the bus subscribe to its channel, on the node that owns it; Subscribe
// returns only after Redis has confirmed it, so nothing published after Subscribe
// returns is missed. fn is called from a receive goroutine and must not block.
func (b *Bus) Subscribe(ctx context.Context, sessionID string, fn func(chat.Event)) (func(), error) {
	if b.closed.Load() {
		return nil, chat.Errorf(chat.EUnavailable, "redis bus is closed")
	}
	ch := b.channel(sessionID)
	s := &subscription{fn: fn}
	token, wait := b.newWaiter()
	b.ctl.Lock()
	b.mu.Lock()
	cs := b.channels[ch]
	b.mu.Unlock()
	var n *node
	if cs != nil && cs.node != nil && !cs.node.dead.Load() {
		n = cs.node
	} else if cs != nil {
		b.ctl.Unlock()
		b.dropWaiter(token)
		return nil, chat.Errorf(chat.EUnavailable, "redis subscriber connection is down")
	} else {
		var err error
		n, err = b.subscribeNew(ctx, ch, sessionID)
		if err != nil {
			b.ctl.Unlock()
			b.dropWaiter(token)
			return nil, err
		}
		cs = b.channels[ch]
	}
	b.mu.Lock()
	cs.subs = append(cs.subs[:len(cs.subs):len(cs.subs)], s)
	b.mu.Unlock()
	b.ctl.Unlock()
	cancel := sync.OnceFunc(func() { b.unsubscribe(ch, s) })
	if err := b.barrier(ctx, n, token, wait); err != nil {
		cancel()
		return nil, err
	}
	return cancel, nil
}

// subscribeNew subscribes ch on its owner's connection and records it. Call with
// b.ctl held.
func (b *Bus) subscribeNew(ctx context.Context, ch, sessionID string) (*node, error) {
	addr, err := b.rc.Owner(ctx, ch)
	if err != nil {
		return nil, err
	}
	n, err := b.nodeFor(ctx, addr)
	if err != nil {
		return nil, err
	}
	if err := n.subscribe(ctx, ch); err != nil {
		// go-redis records the channel even when the write fails; forget it.
		_ = n.unsubscribe(ctx, ch)
		b.nodeLost(n, err)
		return nil, chat.Wrap(chat.EUnavailable, err, "redis subscribe failed")
	}
	b.mu.Lock()
	b.channels[ch] = &channelSubs{session: sessionID, node: n}
	b.mu.Unlock()
	return n, nil
}

// barrier sends a PING with token on n and waits for its PONG.
func (b *Bus) barrier(ctx context.Context, n *node, token string, wait <-chan struct{}) error {
	ctx, cancel := context.WithTimeout(ctx, subscribeTimeout)
	defer cancel()
	if err := n.ps.Ping(ctx, token); err != nil {
		b.dropWaiter(token)
		b.nodeLost(n, err)
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

// unsubscribe removes s; the last local subscriber of a channel unsubscribes it.
func (b *Bus) unsubscribe(ch string, s *subscription) {
	s.canceled.Store(true)
	b.ctl.Lock()
	defer b.ctl.Unlock()
	b.mu.Lock()
	cs := b.channels[ch]
	if cs == nil {
		b.mu.Unlock()
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
		b.mu.Unlock()
		return
	}
	delete(b.channels, ch)
	b.mu.Unlock()
	n := cs.node
	if b.closed.Load() || n == nil || n.dead.Load() {
		return
	}
	ctx, cancel := context.WithTimeout(b.ctx, subscribeTimeout)
	defer cancel()
	if err := n.unsubscribe(ctx, ch); err != nil {
		// The connection is broken: replace it (its other channels move too).
		b.nodeLost(n, err)
	}
}

// Publish sends ev to every subscriber of ev.Session on every replica.
func (b *Bus) Publish(ctx context.Context, ev chat.Event) error {
	var err error
	if b.sharded {
		err = b.rc.Cmd.SPublish(ctx, b.channel(ev.Session), encodeEvent(ev)).Err()
	} else {
		err = b.rc.Cmd.Publish(ctx, b.channel(ev.Session), encodeEvent(ev)).Err()
	}
	if err != nil {
		return chat.Wrap(chat.EUnavailable, err, "redis publish failed")
	}
	return nil
}

// PublishBatch publishes evs in order in one pipeline: one round trip for all of
// them instead of one each (in a cluster, one per master holding their channels, each
// in order). An error means some of them may not have been published.
func (b *Bus) PublishBatch(ctx context.Context, evs []chat.Event) error {
	_, err := b.rc.Cmd.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, ev := range evs {
			if b.sharded {
				p.SPublish(ctx, b.channel(ev.Session), encodeEvent(ev))
			} else {
				p.Publish(ctx, b.channel(ev.Session), encodeEvent(ev))
			}
		}
		return nil
	})
	if err != nil {
		return chat.Wrap(chat.EUnavailable, err, "redis publish failed")
	}
	return nil
}

// OnReconnect registers fn to be called, on its own goroutine, each time the channels
// of a lost subscriber connection are subscribed again.
func (b *Bus) OnReconnect(fn func()) {
	b.mu.Lock()
	b.reconnectFn = append(b.reconnectFn, fn)
	b.mu.Unlock()
}

// receiveLoop is the one reader of a subscriber connection. It delivers messages and
// wakes Subscribe barriers. Any error, a connection silent for three health intervals,
// or the server dropping a channel we hold (its slot moved to another node) ends the
// connection: nodeLost moves its channels.
func (n *node) receiveLoop() {
	b := n.b
	defer b.wg.Done()
	for {
		msg, err := n.ps.ReceiveTimeout(n.ctx, 3*b.health)
		if err != nil {
			if n.ctx.Err() == nil && !errors.Is(err, redis.ErrClosed) {
				b.nodeLost(n, err)
			}
			return
		}
		switch m := msg.(type) {
		case *redis.Message:
			b.dispatch(n, m)
		case *redis.Pong:
			b.wake(m.Payload)
		case *redis.Subscription:
			if (m.Kind == "sunsubscribe" || m.Kind == "unsubscribe") && !n.confirmed(m.Channel) && b.holds(n, m.Channel) {
				b.nodeLost(n, errors.New("the server dropped channel "+m.Channel))
				return
			}
		}
	}
}

// confirmed reports whether an unsubscription of ch arriving now is one the bus asked
// for (a chat left and, perhaps, joined again at once).
func (n *node) confirmed(ch string) bool {
	n.unsubMu.Lock()
	defer n.unsubMu.Unlock()
	if n.unsubs[ch] == 0 {
		return false
	}
	if n.unsubs[ch]--; n.unsubs[ch] == 0 {
		delete(n.unsubs, ch)
	}
	return true
}

// holds reports whether ch is still subscribed on n as far as the bus knows.
func (b *Bus) holds(n *node, ch string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	cs := b.channels[ch]
	return cs != nil && cs.node == n
}

// nodeLost closes n and has rehomeLoop subscribe its channels again.
func (b *Bus) nodeLost(n *node, err error) {
	if n.dead.Swap(true) {
		return
	}
	n.close()
	b.mu.Lock()
	if b.nodes[n.addr] == n {
		delete(b.nodes, n.addr)
	}
	b.mu.Unlock()
	if b.closed.Load() {
		return
	}
	b.losses.Add(1)
	b.log.Warn("redis subscriber connection lost", "node", n.addr, "err", err)
	select {
	case b.rehome <- struct{}{}:
	default:
	}
}

// rehomeLoop subscribes the channels of lost connections again, on the node that owns
// them now, retrying with backoff until all are placed; then it runs the OnReconnect
// callbacks, so the hub catches up on what was published meanwhile.
func (b *Bus) rehomeLoop() {
	defer b.wg.Done()
	for {
		select {
		case <-b.ctx.Done():
			return
		case <-b.rehome:
		}
		losses := b.losses.Load()
		for failures := 1; ; failures++ {
			err := b.moveChannels()
			if err == nil {
				break
			}
			b.log.Debug("resubscribing after a lost connection failed", "err", err)
			if !sleepCtx(b.ctx, backoff(failures)) {
				return
			}
		}
		b.healed.Store(losses)
		if b.losses.Load() == losses {
			b.reconnected()
		}
	}
}

// moveChannels subscribes every channel whose connection is gone on its owner.
func (b *Bus) moveChannels() error {
	ctx, cancel := context.WithTimeout(b.ctx, subscribeTimeout)
	defer cancel()
	owner, err := b.rc.Owners(ctx)
	if err != nil {
		return err
	}
	b.ctl.Lock()
	b.mu.Lock()
	byNode := map[string][]string{}
	for ch, cs := range b.channels {
		if cs.node == nil || cs.node.dead.Load() {
			a := owner(ch)
			byNode[a] = append(byNode[a], ch)
		}
	}
	b.mu.Unlock()
	type pending struct {
		n     *node
		token string
		wait  <-chan struct{}
	}
	var barriers []pending
	var firstErr error
	for addr, chans := range byNode {
		n, err := b.nodeFor(ctx, addr)
		if err != nil {
			firstErr = err
			continue
		}
		for _, ch := range chans {
			if err = n.subscribe(ctx, ch); err != nil {
				break
			}
			b.mu.Lock()
			if cs := b.channels[ch]; cs != nil {
				cs.node = n
			}
			b.mu.Unlock()
		}
		if err != nil {
			b.nodeLost(n, err)
			firstErr = err
			continue
		}
		token, wait := b.newWaiter()
		barriers = append(barriers, pending{n, token, wait})
	}
	b.ctl.Unlock()
	for _, p := range barriers {
		if err := b.barrier(ctx, p.n, p.token, p.wait); err != nil && firstErr == nil {
			firstErr = err
		}
	}
	return firstErr
}

// topologyLoop watches which master serves each slot. After a failover the demoted
// master becomes a replica, and Redis may let its sharded subscriptions stand (a
// replica serves them from the replication stream, which can skip messages while it
// resyncs): every health interval, a connection to a node that no longer serves one
// of its channels' slots is treated as lost, so its channels move to the master and
// the OnReconnect callbacks catch up from the store.
func (b *Bus) topologyLoop() {
	defer b.wg.Done()
	t := time.NewTicker(b.health)
	defer t.Stop()
	for {
		select {
		case <-b.ctx.Done():
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(b.ctx, subscribeTimeout)
		owner, err := b.rc.Owners(ctx)
		cancel()
		if err != nil {
			// The connections' own health checks report an unreachable cluster.
			b.log.Debug("reading the cluster's slots failed", "err", err)
			continue
		}
		stale := map[*node]string{}
		b.mu.Lock()
		for ch, cs := range b.channels {
			if n := cs.node; n != nil && !n.dead.Load() {
				if o := owner(ch); o != "" && o != n.addr {
					stale[n] = o
				}
			}
		}
		b.mu.Unlock()
		for n, o := range stale {
			b.nodeLost(n, errors.New("its slots are served by "+o+" now"))
		}
	}
}

// reconnected runs the OnReconnect callbacks.
func (b *Bus) reconnected() {
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

// dispatch delivers one message to the channel's local subscribers, in order. A
// message from a connection the channel has left (it moved nodes) is dropped.
func (b *Bus) dispatch(n *node, m *redis.Message) {
	b.mu.Lock()
	cs := b.channels[m.Channel]
	var session string
	var subs []*subscription
	if cs != nil && cs.node == n {
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

// healthLoop pings the connection so that a silent one is noticed (its reads time
// out, see receiveLoop).
func (n *node) healthLoop() {
	defer n.b.wg.Done()
	t := time.NewTicker(n.b.health)
	defer t.Stop()
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-t.C:
			ctx, cancel := context.WithTimeout(n.ctx, n.b.health)
			err := n.ps.Ping(ctx, tokenHealth)
			cancel()
			if err != nil && n.ctx.Err() == nil {
				n.b.nodeLost(n, err)
				return
			}
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

// backoff is the pause after the n-th consecutive failure: none after the first,
// then doubling up to two seconds.
func backoff(n int) time.Duration {
	if n <= 1 {
		return 0
	}
	d := 50 * time.Millisecond << min(n-2, 6)
	return min(d, 2*time.Second)
}
