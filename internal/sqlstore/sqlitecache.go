package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"hash/maphash"
	"time"

	"parley/internal/chat"
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
//     (endSession below), which updates the flag in the same transaction; an ended
//     chat never comes back. So the flag cannot go stale, and messages and the end
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

// end (SQLite) ends a chat in the writer's next batch; see sqliteCache.
func (w *writer) end(ctx context.Context, session, by string, at time.Time) (bool, error) {
	r := newRequest(opEnd)
	r.in = chat.Message{SessionID: session, From: by, CreatedAt: at}
	if err := w.do(ctx, r); err != nil {
		return false, err
	}
	won, err := r.won, r.err
	r.release()
	return won, err
}

// endSession runs End's conditional update in the batch and records the outcome.
func (w *writer) endSession(ctx context.Context, st stmts, r *request) error {
	s := r.in.SessionID
	res, err := st.end.ExecContext(ctx, w.d.timeArg(r.in.CreatedAt), r.in.From, s)
	if err != nil {
		return err
	}
	n, err := res.RowsAffected()
	if err != nil {
		return err
	}
	r.won = n == 1
	delete(w.cache.ended, s) // read again by the next append, from this transaction on
	return nil
}

// appendSQLite stores r's message unless the session already holds its client id.
func (w *writer) appendSQLite(ctx context.Context, st stmts, r *request) error {
	s := r.in.SessionID
	if ended, err := w.sessionEnded(ctx, st, s); err != nil || ended {
		if err == nil {
			w.cache.forget(s) // no more appends: free its ids
			delete(w.seqs, s)
			err = w.refuseAfterEnd(ctx, st, r)
		}
		return err
	}
	ids, err := w.clientIDs(ctx, st, s)
	if err != nil {
		return err
	}
	h := w.cache.hash(r.in.ClientID)
	if seq, ok := ids[h]; ok {
		if err := w.flushRows(ctx, st); err != nil { // so the row is there to compare
			return err
		}
		if found, err := w.findStored(ctx, st, r, seq); found || err != nil {
			return err
		}
	}
	r.out.Seq = w.seqs[s] + 1
	w.seqs[s] = r.out.Seq
	w.log.appended(logPart(s))
	ids[h] = r.out.Seq // after a collision the newer seq wins; the older id is found by findStored's lookup
	w.cache.count++
	return w.queueRow(ctx, st, r)
}

// findStored answers r as a duplicate when the session already holds its client id;
// seq is the message the id's hash points at.
func (w *writer) findStored(ctx context.Context, st stmts, r *request, seq int64) (bool, error) {
	err := scanMessage(st.bySeq.QueryRowContext(ctx, r.in.SessionID, seq, logPart(r.in.SessionID)), &r.out)
	if err == nil && r.out.ClientID == r.in.ClientID {
		r.dup = true
		return true, nil
	}
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return false, err
	}
	// Two client ids share a hash: look for this one among the session's rows.
	err = scanMessage(w.byClient(ctx, st, r.in.SessionID, r.in.ClientID), &r.out)
	if err == nil {
		r.dup = true
		return true, nil
	}
	r.out = r.in
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	return false, err
}

// clientIDs returns the session's client-id filter, loading it (and the session's
// last seq) from its rows on first use.
func (w *writer) clientIDs(ctx context.Context, st stmts, session string) (map[uint64]int64, error) {
	if ids, ok := w.cache.ids[session]; ok {
		return ids, nil
	}
	if err := w.flushRows(ctx, st); err != nil { // the load reads the session's rows
		return nil, err
	}
	if w.cache.count >= maxCachedIDs || len(w.cache.ids) >= maxCachedSessions {
		clear(w.cache.ids)
		w.cache.count = 0
		clear(w.seqs)
	}
	rows, err := st.clientIDs.QueryContext(ctx, session, logPart(session))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	ids := make(map[uint64]int64)
	var last int64
	for rows.Next() {
		var seq int64
		var id string
		if err := rows.Scan(&seq, &id); err != nil {
			return nil, err
		}
		ids[w.cache.hash(id)] = seq
		last = max(last, seq)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	w.cache.ids[session], w.seqs[session] = ids, last
	w.cache.count += len(ids)
	return ids, nil
}

// byClient reads the session's message with the client id (SQLite: from either table).
func (w *writer) byClient(ctx context.Context, st stmts, session, clientID string) *sql.Row {
	if w.d.dialect == dialectSQLite {
		return st.byClient.QueryRowContext(ctx, session, clientID, logPart(session))
	}
	return st.byClient.QueryRowContext(ctx, session, clientID)
}

// loadLog reads what the SQLite message log holds.
func (w *writer) loadLog(ctx context.Context) error {
	if w.d.dialect != dialectSQLite {
		return nil
	}
	return w.log.load(ctx, w.prepared.logParts)
}
