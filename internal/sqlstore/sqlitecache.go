package sqlstore

import (
	"hash/maphash"
)

// maxCachedIDs bounds the client-id hashes the SQLite writer keeps (about 40 bytes
// each); past it, every session is forgotten and reloaded from its rows on next use.
const maxCachedIDs = 1 << 20

// sqliteCache is what the SQLite writer remembers of sessions between batches. The
// file belongs to this process and only the writer appends messages, so what it
// remembers stays true until the writer itself changes it.
//
//   - ids: a hash of the client id of every stored message of a session, loaded from
//     the session's rows on first use and kept up to date by the inserts. Only a
//     filter: a miss means the id is new, a hit is confirmed by reading the row. It
//     replaces a unique (session_id, client_id) index, whose second B-tree insert per
//     message cost as much as the message's own.
//   - ended: whether a session no longer takes messages, read once per session. Only
//     End takes a chat out of progress, and on SQLite End runs in the writer's batch
//     (endSession, writer_sqlite.go), which updates the flag in the same transaction;
//     an ended chat never comes back. So the flag cannot go stale, and messages and the end
//     stay ordered: a message is stored before the end, and so exported, or refused.
type sqliteCache struct {
	seed  maphash.Seed
	hashf func(seed maphash.Seed, s string) uint64 // maphash.String; tests make ids collide
	chats map[string]*chatMem                      // session → what is known of it
	count int                                      // client-id hashes held, over every chat
}

// chatMem is what the SQLite writer remembers of one chat: an append looks its chat
// up once and finds its status, seq and client ids together.
type chatMem struct {
	status chatStatus
	ids    map[uint64]int64 // hash of client id → seq; nil until loaded (clientIDs)
	seq    int64            // the last seq stored, once ids is loaded
}

// chatStatus is whether a chat takes messages, as far as the writer has read it.
type chatStatus uint8

const (
	statusUnread chatStatus = iota
	statusOpen
	statusEnded
)

func newSQLiteCache() sqliteCache {
	return sqliteCache{seed: maphash.MakeSeed(), hashf: maphash.String, chats: make(map[string]*chatMem)}
}

// hash returns the filter key of a client id.
func (c *sqliteCache) hash(clientID string) uint64 { return c.hashf(c.seed, clientID) }

// chat returns what is remembered of session, an empty entry when nothing is. Past
// maxCachedSessions chats, every chat is forgotten first.
func (c *sqliteCache) chat(session string) *chatMem {
	if m, ok := c.chats[session]; ok {
		return m
	}
	if len(c.chats) >= maxCachedSessions {
		c.clear()
	}
	m := &chatMem{}
	c.chats[session] = m
	return m
}

// clear forgets every chat.
func (c *sqliteCache) clear() {
	clear(c.chats)
	c.count = 0
}

// forget drops what is known of a session's client ids and seq (reloaded from its
// rows on next use); its status stays.
func (c *sqliteCache) forget(session string) {
	if m := c.chats[session]; m != nil {
		c.count -= len(m.ids)
		m.ids, m.seq = nil, 0
	}
}
