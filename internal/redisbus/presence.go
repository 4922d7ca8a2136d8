package redisbus

import (
	"context"
	"hash/maphash"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"parley/internal/chat"
)

// Presence across replicas.
//
// Each replica counts its own connections per (session, email) in memory. Redis holds,
// per (session, email), a sorted set whose members are the replicas that have at
// least one such connection, scored by when that claim expires (Redis server time, so
// replica clocks do not matter). A heartbeat pushes every claim's expiry PresenceTTL
// ahead; a replica that dies stops refreshing and its claims stop counting once their
// score passes. Every change runs in one Lua script that drops expired claims, then
// adds or removes this replica and returns the member count before and after: exactly
// one caller anywhere sees the set go from empty to non-empty (went online) or back.

// presenceScript sets this replica's claim: ARGV[1] replica, ARGV[2] local connection
// count (0 removes the claim), ARGV[3] TTL in ms. Returns {before, after}.
var presenceScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local before = redis.call('ZCARD', KEYS[1])
if tonumber(ARGV[2]) > 0 then
  redis.call('ZADD', KEYS[1], now + ttl, ARGV[1])
  if redis.call('PTTL', KEYS[1]) < ttl then
    redis.call('PEXPIRE', KEYS[1], ttl)
  end
else
  redis.call('ZREM', KEYS[1], ARGV[1])
end
return {before, redis.call('ZCARD', KEYS[1])}
`)

// onlineScript counts the claims that have not expired.
var onlineScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
return redis.call('ZCOUNT', KEYS[1], '(' .. now, '+inf')
`)

// presenceKey identifies one person in one session.
type presenceKey struct{ session, email string }

// presence is the replica's side of presence: local counts and the heartbeat.
type presence struct {
	b      *Bus
	seed   maphash.Seed
	stripe [64]sync.Mutex // serialises the Redis updates of one key, so they land in order

	mu     sync.Mutex
	counts map[presenceKey]int
}

func newPresence(b *Bus) *presence {
	return &presence{b: b, seed: maphash.MakeSeed(), counts: make(map[presenceKey]int)}
}

// Connected records a connection and reports whether email was offline everywhere.
// When Redis fails the local count still changes (the connection exists; the
// heartbeat writes it once Redis is back), so call Disconnected when it closes.
func (b *Bus) Connected(ctx context.Context, sessionID, email string) (bool, error) {
	before, after, err := b.presence.change(ctx, presenceKey{sessionID, email}, +1)
	return before == 0 && after > 0, err
}

// Disconnected records that a connection closed and reports whether email now has no
// connection on any replica.
func (b *Bus) Disconnected(ctx context.Context, sessionID, email string) (bool, error) {
	before, after, err := b.presence.change(ctx, presenceKey{sessionID, email}, -1)
	return before > 0 && after == 0, err
}

// Online reports whether email has an unexpired claim from any replica.
func (b *Bus) Online(ctx context.Context, sessionID, email string) (bool, error) {
	n, err := onlineScript.Run(ctx, b.rc.Cmd, []string{b.presenceKey(presenceKey{sessionID, email})}).Int64()
	if err != nil {
		return false, chat.Wrap(chat.EUnavailable, err, "redis presence lookup failed")
	}
	return n > 0, nil
}

func (b *Bus) presenceKey(k presenceKey) string {
	return b.prefix + "{" + k.session + "}:presence:" + k.email
}

// change adds delta to the local count of k and writes the resulting claim.
func (p *presence) change(ctx context.Context, k presenceKey, delta int) (before, after int64, err error) {
	lock := p.lock(k)
	lock.Lock()
	defer lock.Unlock()
	p.mu.Lock()
	n := max(p.counts[k]+delta, 0)
	if n == 0 {
		delete(p.counts, k)
	} else {
		p.counts[k] = n
	}
	p.mu.Unlock()
	return p.write(ctx, k, n)
}

// write runs presenceScript for k with local count n.
func (p *presence) write(ctx context.Context, k presenceKey, n int) (before, after int64, err error) {
	args := []any{p.b.replica, n, p.b.ttl.Milliseconds()}
	res, err := presenceScript.Run(ctx, p.b.rc.Cmd, []string{p.b.presenceKey(k)}, args...).Int64Slice()
	if err != nil || len(res) != 2 {
		return 0, 0, chat.Wrap(chat.EUnavailable, err, "redis presence update failed")
	}
	return res[0], res[1], nil
}

func (p *presence) lock(k presenceKey) *sync.Mutex {
	var h maphash.Hash
	h.SetSeed(p.seed)
	h.WriteString(k.session)
	h.WriteString(k.email)
	return &p.stripe[h.Sum64()%uint64(len(p.stripe))]
}

// keys returns the keys this replica has connections for.
func (p *presence) keys() []presenceKey {
	p.mu.Lock()
	defer p.mu.Unlock()
	keys := make([]presenceKey, 0, len(p.counts))
	for k := range p.counts {
		keys = append(keys, k)
	}
	return keys
}

// refresh rewrites every claim of this replica, pushing its expiry ahead and
// restoring claims that Redis lost or expired while it was unreachable.
func (p *presence) refresh(ctx context.Context, remove bool) error {
	var firstErr error
	for _, k := range p.keys() {
		lock := p.lock(k)
		lock.Lock()
		p.mu.Lock()
		n := p.counts[k]
		if remove {
			delete(p.counts, k)
		}
		p.mu.Unlock()
		if remove {
			n = 0
		}
		if n > 0 || remove {
			if _, _, err := p.write(ctx, k, n); err != nil && firstErr == nil {
				firstErr = err
			}
		}
		lock.Unlock()
	}
	return firstErr
}

// removeAll withdraws every claim of this replica (clean shutdown).
func (p *presence) removeAll(ctx context.Context) error { return p.refresh(ctx, true) }

// heartbeatLoop refreshes the claims three times per TTL, so one missed beat does not
// make anyone look offline.
func (p *presence) heartbeatLoop(ctx context.Context, wg *sync.WaitGroup) {
	defer wg.Done()
	t := time.NewTicker(p.b.ttl / 3)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := p.refresh(ctx, false); err != nil {
				p.b.log.Warn("presence heartbeat failed", "err", err)
			}
		}
	}
}
