package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"sync/atomic"
	"time"

	"parley/internal/chat"
)

// sqliteWriter is the SQLite side of the writer: the file belongs to this process and
// only the writer appends, so it remembers each session's last seq and client ids
// between batches (sqlitecache.go), stores each batch's new messages as one row of
// message_pending and merges them into messages (pending.go), and runs End in its
// batches so messages and the end of their chat stay ordered.
type sqliteWriter struct {
	loop     *writer // for its metrics and whether requests wait
	d        *DB
	prepared sqliteStmts // on conn, with the BEGIN, COMMIT and ROLLBACK of its transactions

	// conn is the one pooled connection the writer keeps for itself. SQLite drops a
	// connection's page cache whenever another connection has written since its last
	// transaction; were every batch on whichever connection the pool handed out,
	// every batch would find its cache dropped by the previous one and read each page
	// it touches again.
	conn *sql.Conn

	seqs    map[string]int64 // session → last seq stored
	cache   sqliteCache      // client ids and ended flags kept between batches
	pending *pendingSet      // the DB's: messages in message_pending (pending.go)

	// This batch: its new messages not yet in a batch row (rows), and what it did to
	// the pending messages, applied to pending once it commits (ops).
	rows   []*request
	ops    []pendingOp
	blob   []byte // reused encoding buffer
	nextID int64  // id of the next message_pending row

	merges atomic.Int64 // merges committed
	ready  bool         // started: close merges what is pending
}

// pendingOp is one change a batch makes to the pending messages: a batch row
// (batch) or a chat's messages deleted (drop, through: the last batch row id).
type pendingOp struct {
	batch   *pendingBatch
	drop    string
	through int64
}

// sqliteStmts are the SQLite writer's statements, prepared once on its own connection.
// Its transactions are that connection's too, begun and ended by prepared statements
// (connTx) rather than database/sql's Tx, whose BEGIN and COMMIT the driver compiles
// anew each time and whose statements would be bound again to every transaction: so
// no batch compiles SQL or binds a statement.
type sqliteStmts struct {
	// The writer's transactions (connTx).
	begin, commit, rollback *sql.Stmt
	// The stored messages (chunks.go): the reads behind the client-id filter and
	// resends, and the merge's insert.
	chunksAfter, countChunks, deleteChunks, addChunk *sql.Stmt
	// End (sqlitecache.go); status reads the session's status in the batch
	// transaction, so a message and the end of its chat are ordered.
	end, status *sql.Stmt
	// The pending batches (pending.go).
	addBatch, addDrop, trimBatch, trimDrop, batches, drops *sql.Stmt
}

// list returns every statement with its SQL.
func (st *sqliteStmts) list() stmtList {
	return stmtList{
		{&st.begin, `BEGIN IMMEDIATE`}, {&st.commit, `COMMIT`}, {&st.rollback, `ROLLBACK`},
		{&st.chunksAfter, sqliteChunksAfter}, {&st.countChunks, sqliteChunkCount},
		{&st.deleteChunks, sqliteChunkDelete}, {&st.addChunk, sqliteChunkAdd}, {&st.end, endSession},
		{&st.status, `SELECT status FROM sessions WHERE id = ?`},
		{&st.addBatch, `INSERT INTO message_pending (id, batch) VALUES (?, ?)`},
		{&st.addDrop, `INSERT OR IGNORE INTO message_pending_drops (session_id, through_id) VALUES (?, ?)`},
		{&st.trimBatch, `DELETE FROM message_pending WHERE id = ?`},
		{&st.trimDrop, `DELETE FROM message_pending_drops WHERE session_id = ? AND through_id = ?`},
		{&st.batches, `SELECT id, batch FROM message_pending ORDER BY id`},
		{&st.drops, `SELECT session_id, through_id FROM message_pending_drops`},
	}
}

func newSQLiteWriter(ctx context.Context, loop *writer) (*sqliteWriter, error) {
	d := loop.d
	w := &sqliteWriter{loop: loop, d: d, seqs: make(map[string]int64), cache: newSQLiteCache(), pending: d.pending}
	conn, err := d.db.Conn(ctx)
	if err != nil {
		return nil, dbErr(err, "open the writer's connection")
	}
	w.conn = conn
	if err := w.prepared.list().prepare(ctx, conn); err != nil {
		w.close()
		return nil, dbErr(err, "prepare message statements")
	}
	// The writer touches a few pages per commit (the end of message_pending and of
	// message_chunks), and SQLite walks its whole page cache at the end of every
	// write transaction: a small cache here costs fewer reads than it saves walking.
	if _, err := conn.ExecContext(ctx, "PRAGMA cache_size=-"+writerCacheKiB); err != nil {
		w.close()
		return nil, dbErr(err, "size the writer's page cache")
	}
	if err := w.loadPending(ctx); err != nil {
		w.close()
		return nil, dbErr(err, "read the pending messages")
	}
	if err := w.convertMessages(ctx); err != nil {
		w.close()
		return nil, dbErr(err, "convert the stored messages")
	}
	w.ready = true
	return w, nil
}

// writerCacheKiB is the writer connection's page cache (cache_size, in KiB); readers
// keep sqlitePragmas' larger one.
const writerCacheKiB = "2048"

// close merges what is pending (so a restart has nothing to read back) and releases
// the statements and the connection.
func (w *sqliteWriter) close() {
	if w.ready {
		w.mergeIfDue(true)
	}
	w.prepared.list().close()
	_ = w.conn.Close()
}

// connTx is a write transaction on the writer's own connection: the prepared
// statements run in it until Commit or Rollback. A value, so a batch allocates none.
type connTx struct {
	st   *sqliteStmts
	done bool
}

// begin starts a write transaction on the writer's own connection.
func (w *sqliteWriter) begin(ctx context.Context) (connTx, error) {
	_, err := w.prepared.begin.ExecContext(ctx)
	return connTx{st: &w.prepared}, err
}

// Commit commits; a COMMIT that fails leaves no transaction open behind it.
func (t *connTx) Commit() error {
	t.done = true
	_, err := t.st.commit.ExecContext(context.Background())
	if err != nil {
		t.rollback()
	}
	return err
}

// Rollback rolls back unless the transaction has ended (so it can be deferred).
func (t *connTx) Rollback() {
	if !t.done {
		t.done = true
		t.rollback()
	}
}

func (t *connTx) rollback() { _, _ = t.st.rollback.ExecContext(context.Background()) }

// retryable: a SQLite batch only waits for the file's lock, which busy_timeout bounds;
// a batch that fails anyway is answered with the error.
func (w *sqliteWriter) retryable(error) bool { return false }

// idleEvery: the log is drained when the writer is quiet.
func (w *sqliteWriter) idleEvery() time.Duration { return mergeIdle }

func (w *sqliteWriter) committed() { w.mergeIfDue(false) }
func (w *sqliteWriter) idle()      { w.mergeIfDue(true) }

// rolledBack drops the seq and client-id state of the batch's sessions.
func (w *sqliteWriter) rolledBack(batch []*request) {
	for _, r := range batch {
		delete(w.seqs, r.in.SessionID)
		w.cache.forget(r.in.SessionID)
	}
}

// commitBatch runs the batch in one transaction, then applies what it did to the
// pending messages in memory. Its context has no Done, which saves the driver an
// interrupt watch on every statement.
func (w *sqliteWriter) commitBatch(batch []*request, _ bool) error {
	ctx := context.Background()
	tx, err := w.begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	st := w.prepared
	w.rows, w.ops = w.rows[:0], w.ops[:0]
	defer func() {
		clear(w.rows)
		clear(w.ops)
	}()
	for _, r := range batch {
		if err := w.apply(ctx, st, r); err != nil {
			return err
		}
	}
	if err := w.flushRows(ctx, st); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return err
	}
	if len(w.ops) > 0 {
		w.pending.mu.Lock()
		for _, op := range w.ops {
			if op.batch != nil {
				w.pending.add(op.batch)
			} else {
				w.pending.drop(op.drop, op.through)
			}
		}
		w.pending.mu.Unlock()
	}
	return nil
}

// apply performs one request inside the batch transaction.
func (w *sqliteWriter) apply(ctx context.Context, st sqliteStmts, r *request) error {
	r.dup, r.deleted, r.won, r.err = false, 0, false, nil
	switch r.op {
	case opDelete:
		return w.deleteSession(ctx, st, r)
	case opEnd:
		return w.endSession(ctx, st, r)
	}
	r.out = r.in
	return w.appendMessage(ctx, st, r)
}

// flushRows stores the batch's new messages not yet in a batch row as one row of
// message_pending.
func (w *sqliteWriter) flushRows(ctx context.Context, st sqliteStmts) error {
	if len(w.rows) == 0 {
		return nil
	}
	b := &pendingBatch{id: w.nextID, at: time.Now(), msgs: make([]chat.Message, len(w.rows))}
	w.blob = append(w.blob[:0], pendingVersion)
	for i, r := range w.rows {
		b.msgs[i] = r.out
		w.blob = appendPending(w.blob, &r.out)
	}
	if _, err := st.addBatch.ExecContext(ctx, b.id, w.blob); err != nil {
		return err
	}
	w.nextID++
	w.ops = append(w.ops, pendingOp{batch: b})
	clear(w.rows)
	w.rows = w.rows[:0]
	return nil
}

// sessionEnded reports whether the session's row says it no longer takes messages. A
// session without a row here (sessions kept in another database) is not ended: the
// caller's own check is all there is then. One read per session.
func (w *sqliteWriter) sessionEnded(ctx context.Context, st sqliteStmts, session string) (bool, error) {
	known := w.cache.ended
	if ended, ok := known[session]; ok {
		return ended, nil
	}
	var status string
	err := st.status.QueryRowContext(ctx, session).Scan(&status)
	if errors.Is(err, sql.ErrNoRows) {
		err, status = nil, string(chat.StatusInProgress)
	}
	if err != nil {
		return false, err
	}
	ended := status != string(chat.StatusInProgress)
	if len(known) >= maxCachedSessions {
		clear(known)
	}
	known[session] = ended
	return ended, nil
}

// deleteSession deletes the session's messages, stored and pending; later appends
// start again at seq 1. Pending ones are dropped from memory once the batch commits,
// and marked, so a restart does not read them back from their batch rows.
func (w *sqliteWriter) deleteSession(ctx context.Context, st sqliteStmts, r *request) error {
	s := r.in.SessionID
	if err := w.flushRows(ctx, st); err != nil { // rows before the delete are deleted too
		return err
	}
	if err := st.countChunks.QueryRowContext(ctx, s).Scan(&r.deleted); err != nil {
		return err
	}
	if _, err := st.deleteChunks.ExecContext(ctx, s); err != nil {
		return err
	}
	n := int64(0)
	w.eachPending(s, func(*chat.Message) bool { n++; return true })
	if n > 0 {
		through := w.nextID - 1
		if _, err := st.addDrop.ExecContext(ctx, s, through); err != nil {
			return err
		}
		w.ops = append(w.ops, pendingOp{drop: s, through: through})
		r.deleted += n
	}
	delete(w.seqs, s) // reloaded, empty, by the next append
	w.cache.forget(s)
	return nil
}

// endSession runs End's conditional update in the batch and records the outcome.
func (w *sqliteWriter) endSession(ctx context.Context, st sqliteStmts, r *request) error {
	s := r.in.SessionID
	n, err := execCount(ctx, st.end, w.d.timeArg(r.in.CreatedAt), r.in.From, s)
	if err != nil {
		return err
	}
	r.won = n == 1
	delete(w.cache.ended, s) // read again by the next append, from this transaction on
	return nil
}

// appendMessage stores r's message unless the session already holds its client id.
func (w *sqliteWriter) appendMessage(ctx context.Context, st sqliteStmts, r *request) error {
	s := r.in.SessionID
	if ended, err := w.sessionEnded(ctx, st, s); err != nil || ended {
		if err == nil {
			w.cache.forget(s) // no more appends: free its ids
			delete(w.seqs, s)
			err = refuseAfterEnd(w.byClient(ctx, st, s, r.in.ClientID, &r.out), r)
		}
		return err
	}
	ids, err := w.clientIDs(ctx, st, s)
	if err != nil {
		return err
	}
	h := w.cache.hash(r.in.ClientID)
	if seq, ok := ids[h]; ok {
		if found, err := w.findStored(ctx, st, r, seq); found || err != nil {
			return err
		}
	}
	if w.pending.rows+len(w.rows) >= maxPending {
		r.err = chat.Errorf(chat.EUnavailable, "too many messages wait to be stored; try again shortly")
		return nil
	}
	r.out.Seq = w.seqs[s] + 1
	w.seqs[s] = r.out.Seq
	ids[h] = r.out.Seq // after a collision the newer seq wins; the older id is found by findStored's lookup
	w.cache.count++
	w.rows = append(w.rows, r)
	return nil
}

// findStored answers r as a duplicate when the session already holds its client id;
// seq is the message the id's hash points at.
func (w *sqliteWriter) findStored(ctx context.Context, st sqliteStmts, r *request, seq int64) (bool, error) {
	if m := w.pendingMessage(r.in.SessionID, func(m *chat.Message) bool { return m.Seq == seq }); m != nil {
		if m.ClientID == r.in.ClientID {
			r.out, r.dup = *m, true
			return true, nil
		}
		return w.findByClient(ctx, st, r)
	}
	err := w.stored(ctx, st, r.in.SessionID, seq-1, func(m *chat.Message) bool { return m.Seq == seq }, &r.out)
	if err == nil && r.out.ClientID == r.in.ClientID {
		r.dup = true
		return true, nil
	}
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return false, err
	}
	return w.findByClient(ctx, st, r)
}

// findByClient answers r as a duplicate when the session holds its client id, pending
// or stored: two client ids share a hash, so the id itself is looked for.
func (w *sqliteWriter) findByClient(ctx context.Context, st sqliteStmts, r *request) (bool, error) {
	err := w.byClient(ctx, st, r.in.SessionID, r.in.ClientID, &r.out)
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
func (w *sqliteWriter) clientIDs(ctx context.Context, st sqliteStmts, session string) (map[uint64]int64, error) {
	if ids, ok := w.cache.ids[session]; ok {
		return ids, nil
	}
	if w.cache.count >= maxCachedIDs || len(w.cache.ids) >= maxCachedSessions {
		clear(w.cache.ids)
		w.cache.count = 0
		clear(w.seqs)
	}
	ids := make(map[uint64]int64)
	var last int64
	if err := readChunks(ctx, st.chunksAfter, session, 0, func(m *chat.Message) bool {
		ids[w.cache.hash(m.ClientID)] = m.Seq
		last = max(last, m.Seq)
		return true
	}); err != nil {
		return nil, err
	}
	w.eachPending(session, func(m *chat.Message) bool {
		ids[w.cache.hash(m.ClientID)] = m.Seq
		last = max(last, m.Seq)
		return true
	})
	w.cache.ids[session], w.seqs[session] = ids, last
	w.cache.count += len(ids)
	return ids, nil
}

// byClient reads the session's message with the client id into m, pending or
// stored; sql.ErrNoRows when there is none.
func (w *sqliteWriter) byClient(ctx context.Context, st sqliteStmts, session, clientID string, m *chat.Message) error {
	if p := w.pendingMessage(session, func(m *chat.Message) bool { return m.ClientID == clientID }); p != nil {
		*m = *p
		return nil
	}
	return w.stored(ctx, st, session, 0, func(m *chat.Message) bool { return m.ClientID == clientID }, m)
}

// stored reads into m the first of the session's stored messages after seq after that
// match reports; sql.ErrNoRows when there is none.
func (w *sqliteWriter) stored(ctx context.Context, st sqliteStmts, session string, after int64, match func(*chat.Message) bool, m *chat.Message) error {
	found := false
	err := readChunks(ctx, st.chunksAfter, session, after, func(c *chat.Message) bool {
		if match(c) {
			*m, found = *c, true
		}
		return !found
	})
	if err == nil && !found {
		err = sql.ErrNoRows
	}
	return err
}
