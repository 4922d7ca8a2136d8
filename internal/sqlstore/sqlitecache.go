package sqlstore

import (
	"hash/maphash"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
)

// maxCachedIDs bounds the client-id hashes the SQLite writer keeps (about 40 bytes
// each); past it, chats are forgotten and reloaded from their rows on next use.
const maxCachedIDs = 1 << 20

// cacheShards is how many parts sqliteCache splits its chats into, each with its own
// lock and its share of the bounds (maxCachedSessions, maxCachedIDs).
const cacheShards = 64

// sqliteCache is what the SQLite writer remembers of chats between appends. The file
// belongs to this process and only the writer appends messages, so what it remembers
// stays true until the writer itself changes it.
//
//   - ids: a hash of the client id of every stored message of a chat, loaded from
//     the chat's rows on first use and kept up to date by the appends. Only a
//     filter: a miss means the id is new, a hit is confirmed by reading the row. It
//     replaces a unique (session_id, client_id) index, whose second B-tree insert per
//     message cost as much as the message's own.
//   - status: whether a chat no longer takes messages, read once per chat. Only End
//     takes a chat out of progress, and on SQLite End runs in the writer's batch
//     (endSession, writer_sqlite.go) holding the chat's lock, which marks the status
//     to be read again once its transaction has committed; an ended chat never comes
//     back. So the status cannot go stale, and messages and the end stay ordered: a
//     message is stored before the end, and so exported, or refused.
//
// Each chat has a lock of its own (chatMem.mu), held by an append from its checks to
// its log record and its place among the pending messages, so appends to different
// chats never wait for one another here; the shards' locks are held only to find or
// add a chat's entry.
type sqliteCache struct {
	seed   maphash.Seed
	hashf  func(seed maphash.Seed, s string) uint64 // maphash.String; tests make ids collide
	shards [cacheShards]cacheShard
}

// cacheShard is one part of the cache: the chats whose id hashes to it.
type cacheShard struct {
	mu    sync.Mutex
	chats map[string]*chatMem // session → what is known of it; under mu
	ids   atomic.Int64        // client-id hashes its chats hold
	_     [40]byte            // a cache line each, so shards' locks do not share one
}

// chatMem is what the SQLite writer remembers of one chat: an append looks its chat
// up once and finds its status, seq and client ids together, under the chat's lock.
type chatMem struct {
	mu      sync.Mutex
	dead    bool // under mu: forgotten by its shard; the chat is looked up again
	shard   *cacheShard
	status  chatStatus
	ids     map[uint64]int64 // hash of client id → seq; nil until loaded (clientIDs)
	seq     int64            // the last seq stored, once ids is loaded
	rec     []byte           // the append's log record, encoded before the log's lock is taken
	writes  uint32           // its log writes, for logTimingEvery
	pending *pendingShard    // its shard of the pending set, once an append looked it up
}

// chatStatus is whether a chat takes messages, as far as the writer has read it.
type chatStatus uint8

const (
	statusUnread chatStatus = iota
	statusOpen
	statusEnded
)

func newSQLiteCache() *sqliteCache {
	c := &sqliteCache{seed: maphash.MakeSeed(), hashf: maphash.String}
	for i := range c.shards {
		c.shards[i].chats = make(map[string]*chatMem)
	}
	return c
}

// hash returns the filter key of a client id.
func (c *sqliteCache) hash(clientID string) uint64 { return c.hashf(c.seed, clientID) }

// lock returns what is remembered of session, an empty entry when nothing is, with
// its lock held. Past its share of maxCachedSessions chats, a shard first forgets
// every chat no append holds.
func (c *sqliteCache) lock(session string) *chatMem {
	sh := &c.shards[maphash.String(c.seed, session)%cacheShards]
	for {
		sh.mu.Lock()
		m := sh.chats[session]
		if m == nil {
			if len(sh.chats) >= maxCachedSessions/cacheShards {
				sh.forget(nil, true)
			}
			m = &chatMem{shard: sh}
			sh.chats[session] = m
		}
		sh.mu.Unlock()
		m.mu.Lock()
		if !m.dead {
			return m
		}
		m.mu.Unlock() // forgotten in between: a new entry stands for the chat
	}
}

// forget drops what is known of the chat's client ids and seq (reloaded from its rows
// on next use); its status stays. m.mu must be held.
func (m *chatMem) forget() {
	m.shard.ids.Add(-int64(len(m.ids)))
	m.ids, m.seq = nil, 0
}

// loaded counts the n client ids just loaded into m (m.mu held); past the shard's
// share of maxCachedIDs, the shard's other chats forget theirs.
func (m *chatMem) loaded(n int) {
	if m.shard.ids.Add(int64(n)) > maxCachedIDs/cacheShards {
		m.shard.mu.Lock()
		m.shard.forget(m, false)
		m.shard.mu.Unlock()
	}
}

// added counts one client id added to m's filter.
func (m *chatMem) added() { m.shard.ids.Add(1) }

// forget makes the shard forget every chat but keep, of those no append holds now:
// their entries (all) or only their client ids. sh.mu must be held; a chat's lock is
// only tried, never waited for, so an append holding it never waits for the shard.
func (sh *cacheShard) forget(keep *chatMem, all bool) {
	for s, m := range sh.chats {
		if m == keep || !m.mu.TryLock() {
			continue
		}
		m.forget()
		if all {
			m.dead = true
			delete(sh.chats, s)
		}
		m.mu.Unlock()
	}
}

// each calls fn with every chat remembered now, its shard's lock not held.
func (c *sqliteCache) each(fn func(*chatMem)) {
	for i := range c.shards {
		sh := &c.shards[i]
		sh.mu.Lock()
		chats := slices.Collect(maps.Values(sh.chats))
		sh.mu.Unlock()
		for _, m := range chats {
			fn(m)
		}
	}
}
