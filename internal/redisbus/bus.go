// Package redisbus carries chat events between Parley replicas over Redis pub/sub and
// counts each person's connections across replicas, so that several `parley serve`
// processes behind a load balancer behave like one.
//
// Fan-out is at most once, as Redis pub/sub is: a replica whose subscriber connection
// drops misses what was published meanwhile. The bus notices the drop, waits until
// go-redis has resubscribed, and then calls the OnReconnect callbacks so the hub can
// catch up from the message store by seq.
package redisbus

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"parley/internal/chat"
)

// Defaults for the zero values of Options.
const (
	DefaultPresenceTTL    = 20 * time.Second
	DefaultHealthInterval = 2 * time.Second
)

// Options configure a Bus. Only URL is required.
type Options struct {
	// URL is the Redis server, e.g. redis://127.0.0.1:6379/0.
	URL string
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
	// HealthInterval is how often the subscriber connection is pinged; a connection
	// silent for three intervals is treated as dead and replaced.
	HealthInterval time.Duration
}

// Bus is the Redis-backed chat.Broker and chat.Presence of one replica.
type Bus struct {
	cmd     *redis.Client // commands: PUBLISH, presence scripts, PING
	sub     *redis.Client // owns the one subscriber connection
	ps      *redis.PubSub
	prefix  string
	replica string
	log     *slog.Logger
	ttl     time.Duration
	health  time.Duration

	subConn atomic.Pointer[net.Conn] // the subscriber's socket, closed when it goes silent
	lost    atomic.Bool              // the subscriber connection is down or resubscribing
	dials   atomic.Uint64            // subscriber connections dialed; each after the first is a reconnect

	mu          sync.Mutex
	channels    map[string]*channelSubs // by Redis channel name
	waiters     map[string]chan struct{}
	reconnectFn []func()
	nextID      uint64

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

// New connects to Redis, opens the subscriber connection and starts the receive loop,
// the health pings and the presence heartbeat.
func New(ctx context.Context, opts Options) (*Bus, error) {
	ropts, err := redis.ParseURL(opts.URL)
	if err != nil {
		return nil, chat.Wrap(chat.EInvalid, err, "redis URL is not valid")
	}
	b := newBus(opts)
	cmdOpts := *ropts
	cmdOpts.ClientName = "parley-" + b.replica
	b.cmd = redis.NewClient(&cmdOpts)
	b.sub = redis.NewClient(b.subscriberOptions(ropts))
	if err := b.cmd.Ping(ctx).Err(); err != nil {
		_ = b.closeClients()
		return nil, chat.Wrap(chat.EUnavailable, err, "redis cannot be reached")
	}
	b.ps = b.sub.Subscribe(ctx)
	if err := b.ps.Ping(ctx, "start"); err != nil {
		_ = b.ps.Close()
		_ = b.closeClients()
		return nil, chat.Wrap(chat.EUnavailable, err, "redis subscriber connection failed")
	}
	b.presence = newPresence(b)
	b.wg.Add(3)
	go b.receiveLoop()
	go b.healthLoop()
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
		waiters:  make(map[string]chan struct{}),
	}
	if b.replica == "" {
		b.replica = randomID()
	}
	if b.log == nil {
		b.log = slog.New(slog.DiscardHandler)
	}
	if b.ttl <= 0 {
		b.ttl = DefaultPresenceTTL
	}
	if b.health <= 0 {
		b.health = DefaultHealthInterval
	}
	b.log = b.log.With("component", "redisbus", "replica", b.replica)
	b.ctx, b.cancel = context.WithCancel(context.Background())
	return b
}

// subscriberOptions names the subscriber connection (so operators and tests can find
// it in CLIENT LIST) and remembers its socket, so the health loop can drop a
// connection that went silent without an error (a half-open TCP connection).
func (b *Bus) subscriberOptions(ropts *redis.Options) *redis.Options {
	o := *ropts
	o.ClientName = "parley-sub-" + b.replica
	dial := o.Dialer
	if dial == nil {
		dial = redis.NewDialer(&o)
	}
	o.Dialer = func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dial(ctx, network, addr)
		if err == nil {
			b.subConn.Store(&c)
			if b.dials.Add(1) > 1 {
				b.lost.Store(true) // go-redis is reconnecting; see receiveLoop
			}
		}
		return c, err
	}
	return &o
}

// ReplicaID returns the name this replica uses in presence records.
func (b *Bus) ReplicaID() string { return b.replica }

// Ping reports whether Redis answers and the subscriber connection is up, so /readyz
// takes a replica that cannot hear other replicas out of rotation.
func (b *Bus) Ping(ctx context.Context) error {
	if err := b.cmd.Ping(ctx).Err(); err != nil {
		return chat.Wrap(chat.EUnavailable, err, "redis cannot be reached")
	}
	if b.lost.Load() {
		return chat.Errorf(chat.EUnavailable, "redis subscriber connection is down")
	}
	return nil
}

// Close removes this replica's presence records, then closes the subscriber and the
// clients. Calling it twice is harmless.
func (b *Bus) Close() error {
	if !b.closed.CompareAndSwap(false, true) {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	b.cancel()
	perr := b.presence.removeAll(ctx)
	err := b.ps.Close()
	b.wg.Wait()
	return errors.Join(perr, err, b.closeClients())
}

// crash stops everything without removing presence records, as a killed process
// would; tests use it to prove that records expire.
func (b *Bus) crash() {
	if !b.closed.CompareAndSwap(false, true) {
		return
	}
	b.cancel()
	_ = b.ps.Close()
	b.wg.Wait()
	_ = b.closeClients()
}

func (b *Bus) closeClients() error {
	return errors.Join(b.cmd.Close(), b.sub.Close())
}

// channel is the Redis channel of a session.
func (b *Bus) channel(sessionID string) string { return b.prefix + "session:" + sessionID }

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
