package hub

import (
	"context"
	"hash/maphash"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"parley/internal/chat"
	"parley/internal/metrics"
)

// Defaults of the publish queue.
const (
	DefaultPublishTimeout = 1500 * time.Millisecond
	DefaultPublishQueue   = 8192
	publishShards         = 8
)

// InstantBroker is a Broker whose Publish never waits on anything outside the process
// (the in-process bus). The hub calls its Publish directly instead of queueing.
type InstantBroker interface {
	chat.Broker
	PublishNeverBlocks()
}

// SharedBroker is an InstantBroker that counts the hubs publishing through it (the
// in-process bus). A hub alone on it delivers every message it publishes itself
// (Member.Deliver) before publishing, and no other hub is there to hear it, so it
// does not hand the bus its messages, which would only hand them back to be dropped
// as duplicates. Every other event still goes through the bus.
type SharedBroker interface {
	InstantBroker
	// JoinHub counts one more hub on the broker until the returned func is called.
	JoinHub() (leave func())
	// Hubs is how many hubs are on the broker.
	Hubs() int
}

// BatchBroker is a Broker that can publish several events in one round trip (the
// Redis bus pipelines them). The publish queue hands it what waits in a shard, in
// order, up to maxPublishBatch at a time.
type BatchBroker interface {
	chat.Broker
	PublishBatch(ctx context.Context, evs []chat.Event) error
}

// maxPublishBatch bounds the events one publish round trip carries.
const maxPublishBatch = 128

// Publish hands ev to the broker for the other replicas, without waiting for it: an
// ack and this replica's deliveries never wait for the broker. Events are queued per
// replica, in order per session, and published by a few long-lived goroutines, each
// publish bounded by PublishTimeout. When PublishQueue events wait already (the broker
// is hung or gone), ev is dropped and counted: other replicas read stored messages
// from the store, by seq, once they notice (see brokerHealth), and presence is
// re-read by the presence watch.
func (h *Hub) Publish(ev chat.Event) { h.pub.publish(ev) }

// publisher is the hub's publish queue: one ring and one goroutine per shard, a
// session always in the same shard, so its events keep their order.
type publisher struct {
	b       chat.Broker
	instant bool
	shared  SharedBroker // b, when it counts its hubs
	leave   func()       // shared: this hub leaves it
	log     *slog.Logger
	m       *metrics.Metrics
	timeout time.Duration
	seed    maphash.Seed
	shards  [publishShards]pubShard
	failing atomic.Bool // the last publish failed or an event was dropped
	recent  atomic.Bool // a publish failed or an event was dropped since the last health check
	abandon atomic.Bool // closing took too long: drop what waits
	wg      sync.WaitGroup
}

// pubShard is one ring of waiting events and its goroutine, which sleeps on wake
// while the ring is empty.
type pubShard struct {
	mu      sync.Mutex
	wake    sync.Cond
	ring    []chat.Event
	head, n int
	closed  bool
}

func newPublisher(b chat.Broker, log *slog.Logger, m *metrics.Metrics, timeout time.Duration, size int) *publisher {
	if timeout <= 0 {
		timeout = DefaultPublishTimeout
	}
	if size <= 0 {
		size = DefaultPublishQueue
	}
	p := &publisher{b: b, log: log, m: m, timeout: timeout, seed: maphash.MakeSeed()}
	if _, ok := b.(InstantBroker); ok || b == nil {
		p.instant = true
		if sb, ok := b.(SharedBroker); ok {
			p.shared, p.leave = sb, sb.JoinHub()
		}
		return p
	}
	per := max(1, size/publishShards)
	for i := range p.shards {
		sh := &p.shards[i]
		sh.wake.L = &sh.mu
		sh.ring = make([]chat.Event, per)
		p.wg.Add(1)
		go p.run(sh)
	}
	return p
}

func (p *publisher) publish(ev chat.Event) {
	if p.b == nil {
		return
	}
	if p.instant {
		if ev.Type == chat.EventMessage && p.shared != nil && p.shared.Hubs() == 1 {
			return // delivered here already, and no other hub listens (SharedBroker)
		}
		if err := p.b.Publish(context.Background(), ev); err != nil {
			p.log.Warn("cannot publish an event", "session", ev.Session, "type", int(ev.Type), "err", err)
		}
		return
	}
	sh := &p.shards[maphash.String(p.seed, ev.Session)%publishShards]
	sh.mu.Lock()
	if sh.closed || sh.n == len(sh.ring) {
		sh.mu.Unlock()
		p.dropped()
		return
	}
	sh.ring[(sh.head+sh.n)%len(sh.ring)] = ev
	sh.n++
	if sh.n == 1 {
		sh.wake.Signal()
	}
	sh.mu.Unlock()
}

// dropped counts an event the queue had no room for.
func (p *publisher) dropped() {
	p.m.PublishDropped()
	p.recent.Store(true)
	if !p.failing.Swap(true) {
		p.log.Warn("the broker is behind; dropping events (other replicas catch up from the store)")
	}
}

// run publishes sh's events in order until the publisher closes and sh is empty:
// everything waiting at once (up to maxPublishBatch) in one round trip when the broker
// can (BatchBroker), else one by one. Each round trip gets a context with a deadline of
// its own (the Redis client bounds its socket reads by the deadline, not by a
// cancellation): a few hundred nanoseconds beside a network round trip, and the
// in-process bus never comes here.
func (p *publisher) run(sh *pubShard) {
	defer p.wg.Done()
	batcher, _ := p.b.(BatchBroker)
	limit := 1
	if batcher != nil {
		limit = maxPublishBatch
	}
	evs := make([]chat.Event, 0, limit)
	for {
		sh.mu.Lock()
		for sh.n == 0 && !sh.closed {
			sh.wake.Wait()
		}
		if sh.n == 0 || p.abandon.Load() {
			sh.n = 0
			sh.mu.Unlock()
			return
		}
		for sh.n > 0 && len(evs) < limit {
			evs = append(evs, sh.ring[sh.head])
			sh.ring[sh.head] = chat.Event{}
			sh.head = (sh.head + 1) % len(sh.ring)
			sh.n--
		}
		sh.mu.Unlock()

		ctx, cancel := context.WithTimeout(context.Background(), p.timeout)
		var err error
		if len(evs) > 1 {
			err = batcher.PublishBatch(ctx, evs)
		} else {
			err = p.b.Publish(ctx, evs[0])
		}
		cancel()
		p.done(evs, err)
		clear(evs)
		evs = evs[:0]
	}
}

// done records the outcome of publishing evs: a failure counts each of them and is
// logged once per outage.
func (p *publisher) done(evs []chat.Event, err error) {
	if err != nil {
		for range evs {
			p.m.PublishFailed()
		}
		p.recent.Store(true)
		if !p.failing.Swap(true) {
			p.log.Warn("cannot publish to the broker (other replicas catch up from the store)", "session", evs[0].Session, "err", err)
		}
		return
	}
	if p.failing.Load() && p.failing.Swap(false) {
		p.log.Info("publishing to the broker again")
	}
}

// closeWait is how long closing waits for waiting events to be published.
const closeWait = 3 * time.Second

// close stops the goroutines once their queues are empty and waits for them, at most
// closeWait (then what still waits is dropped; the store has the messages).
func (p *publisher) close() {
	if p.leave != nil {
		p.leave()
	}
	for i := range p.shards {
		sh := &p.shards[i]
		sh.mu.Lock()
		sh.closed = true
		sh.wake.Broadcast()
		sh.mu.Unlock()
	}
	done := make(chan struct{})
	go func() { p.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(closeWait):
		p.abandon.Store(true)
		<-done
	}
}
