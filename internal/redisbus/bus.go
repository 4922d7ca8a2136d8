// Package redisbus carries chat events between Parley replicas over Redis pub/sub and
// counts each person's connections across replicas, so that several `parley serve`
// processes behind a load balancer behave like one.
//
// Each chat has its own channel, and a replica subscribes only to the chats it has
// connections for. On one Redis server the bus uses classic pub/sub (PUBLISH,
// SUBSCRIBE); on a Redis Cluster it uses sharded pub/sub (SPUBLISH, SSUBSCRIBE), so a
// message travels only within the shard that owns the chat's slot instead of being
// broadcast to every node. The chat's id is the hash tag of its channel and presence
// keys, so they live on one shard. A replica keeps one subscriber connection per node
// it needs, holding the channels of the chats whose slots that node serves.
//
// Fan-out is at most once, as Redis pub/sub is: a replica whose subscriber connection
// drops misses what was published meanwhile. The bus notices the drop, subscribes the
// connection's channels again on the node that now owns them (after a failover, the
// promoted replica), and then calls the OnReconnect callbacks so the hub can catch up
// from the message store by seq.
package redisbus

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"parley/internal/chat"
	"parley/internal/redisconn"
)

// Defaults for the zero values of Options.
const (
	DefaultPresenceTTL    = 20 * time.Second
	DefaultHealthInterval = 2 * time.Second
)

// Options configure a Bus. Only URL is required.
type Options struct {
	// URL is the Redis server, e.g. redis://127.0.0.1:6379/0, or with Cluster set a
	// Redis Cluster in go-redis's form redis://host1:p1?addr=host2:p2&addr=host3:p3.
	URL     string
	Cluster bool
	// Prefix goes in front of every channel and key, so that several deployments
	// (or test runs) can share one Redis.
	Prefix string
	Logger *slog.Logger
	// ReplicaID names this process in presence records and in CLIENT LIST
	// ("parley-<id>", "parley-sub-<id>"). Random when empty. Two live processes must
	// never share one.
	ReplicaID string
	// PresenceTTL is how long this replica's presence records outlive its last
	// heartbeat: after a crash, its connections stop counting within PresenceTTL.
	PresenceTTL time.Duration
	// HealthInterval is how often each subscriber connection is pinged; a connection
	// silent for three intervals is treated as dead and replaced.
	HealthInterval time.Duration
}

// Bus is the Redis-backed chat.Broker and chat.Presence of one replica.
type Bus struct {
	rc      *redisconn.Client // commands: (S)PUBLISH, presence scripts, PING
	sharded bool              // SPUBLISH/SSUBSCRIBE (a cluster) rather than PUBLISH/SUBSCRIBE
	prefix  string
	replica string
	log     *slog.Logger
	ttl     time.Duration
	health  time.Duration

	// ctl serialises subscription changes: Subscribe, unsubscribe and the moving of
	// channels off lost connections. It is held across network writes, never while
	// waiting for Redis to answer.
	ctl sync.Mutex
	// mu guards the maps below; dispatch holds it only to look a channel up.
	mu          sync.Mutex
	channels    map[string]*channelSubs // by Redis channel name
	nodes       map[string]*node        // live subscriber connections by node address
	waiters     map[string]chan struct{}
	reconnectFn []func()
	nextID      uint64

	losses atomic.Uint64 // subscriber connections lost so far
	healed atomic.Uint64 // losses whose channels are subscribed again
	rehome chan struct{} // wakes rehomeLoop

	presence *presence

	ctx    context.Context // ends at Close
	cancel context.CancelFunc
	wg     sync.WaitGroup
	closed atomic.Bool
}

var (
	_ chat.Broker   = (*Bus)(nil)
	_ chat.Presence = (*Bus)(nil)
)

// New connects to Redis (on one server, also opening the subscriber connection) and
// starts the presence heartbeat and the loop that resubscribes after a lost connection.
func New(ctx context.Context, opts Options) (*Bus, error) {
	b := newBus(opts)
	rc, err := redisconn.Open(ctx, redisconn.Target{URL: opts.URL, Cluster: opts.Cluster}, "parley-"+b.replica)
	if err != nil {
		return nil, err
	}
	b.rc, b.sharded = rc, opts.Cluster
	if !b.sharded {
		// One server: its subscriber connection opens now, so a replica that cannot
		// subscribe fails at start, not at its first chat.
		b.ctl.Lock()
		_, err := b.nodeFor(ctx, "")
		b.ctl.Unlock()
		if err != nil {
			_ = rc.Close()
			return nil, err
		}
	}
	b.presence = newPresence(b)
	if b.sharded {
		b.wg.Add(1)
		go b.topologyLoop()
	}
	b.wg.Add(2)
	go b.rehomeLoop()
	go b.presence.heartbeatLoop(b.ctx, &b.wg)
	return b, nil
}

// newBus fills in defaults; it does not connect.
func newBus(opts Options) *Bus {
	b := &Bus{
		prefix:   opts.Prefix,
		replica:  opts.ReplicaID,
		log:      opts.Logger,
		ttl:      opts.PresenceTTL,
		health:   opts.HealthInterval,
		channels: make(map[string]*channelSubs),
		nodes:    make(map[string]*node),
		waiters:  make(map[string]chan struct{}),
		rehome:   make(chan struct{}, 1),
	}
	if b.replica == "" {
		b.replica = randomID()
	}
	if b.log == nil {
		b.log = slog.New(slog.DiscardHandler)
	}
	chat.SetDefault(&b.ttl, DefaultPresenceTTL)
	chat.SetDefault(&b.health, DefaultHealthInterval)
	b.log = b.log.With("component", "redisbus", "replica", b.replica)
	b.ctx, b.cancel = context.WithCancel(context.Background())
	return b
}

// ReplicaID returns the name this replica uses in presence records.
func (b *Bus) ReplicaID() string { return b.replica }

// Ping reports whether Redis (every master of a cluster) answers and every subscriber
// connection is up, so /readyz takes a replica that cannot hear other replicas out of
// rotation.
func (b *Bus) Ping(ctx context.Context) error {
	if err := b.rc.Ping(ctx); err != nil {
		return err
	}
	if b.losses.Load() != b.healed.Load() {
		return chat.Errorf(chat.EUnavailable, "redis subscriber connection is down")
	}
	return nil
}

// Close removes this replica's presence records, then closes the subscriber
// connections and the client. Calling it twice is harmless.
func (b *Bus) Close() error {
	if !b.closed.CompareAndSwap(false, true) {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	b.cancel()
	perr := b.presence.removeAll(ctx)
	b.closeNodes()
	b.wg.Wait()
	return errors.Join(perr, b.rc.Close())
}

// crash stops everything without removing presence records, as a killed process
// would; tests use it to prove that records expire.
func (b *Bus) crash() {
	if !b.closed.CompareAndSwap(false, true) {
		return
	}
	b.cancel()
	b.closeNodes()
	b.wg.Wait()
	_ = b.rc.Close()
}

// closeNodes closes every subscriber connection.
func (b *Bus) closeNodes() {
	b.mu.Lock()
	nodes := make([]*node, 0, len(b.nodes))
	for _, n := range b.nodes {
		nodes = append(nodes, n)
	}
	b.mu.Unlock()
	for _, n := range nodes {
		n.close()
	}
}

// channel is the Redis channel of a session. The session id is its hash tag, as in
// the session's presence keys, so that in a cluster they all live on one shard.
func (b *Bus) channel(sessionID string) string { return b.prefix + "{" + sessionID + "}:events" }

// randomID returns 16 hex digits, enough to tell processes and test runs apart.
func randomID() string {
	var p [8]byte
	_, _ = rand.Read(p[:])
	return hex.EncodeToString(p[:])
}

// sleepCtx waits for d or until ctx ends, and reports whether ctx is still alive.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
