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
	ids   map[string]map[uint64]int64              // session → hash of client id → seq
	count int                                      // entries in ids
	ended map[string]bool
}

func newSQLiteCache() sqliteCache {
	return sqliteCache{seed: maphash.MakeSeed(), hashf: maphash.String, ids: make(map[string]map[uint64]int64), ended: make(map[string]bool)}
}

// hash returns the filter key of a client id.
func (c *sqliteCache) hash(clientID string) uint64 { return c.hashf(c.seed, clientID) }

// forget drops what is known of a session's client ids.
func (c *sqliteCache) forget(session string) {
	c.count -= len(c.ids[session])
	delete(c.ids, session)
}
