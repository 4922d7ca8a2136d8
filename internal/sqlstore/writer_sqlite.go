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
// between batches (sqlitecache.go), appends to the message log and moves the log into
// messages (messagelog.go), and runs End in its batches so messages and the end of
// their chat stay ordered.
type sqliteWriter struct {
	loop     *writer // for its metrics and whether requests wait
	d        *DB
	prepared sqliteStmts // on the pool; bound to each batch's transaction

	// conn is the one pooled connection the writer keeps for itself. SQLite drops a
	// connection's page cache whenever another connection has written since its last
	// transaction; were every batch on whichever connection the pool handed out,
	// every batch would find its cache dropped by the previous one and read each page
	// it touches again.
	conn *sql.Conn

	seqs  map[string]int64 // session → last seq stored
	cache sqliteCache      // client ids and ended flags kept between batches
	log   messageLog       // rows waiting in message_log, by part (messagelog.go)
	rows  []*request       // this batch's messages not yet inserted (flushRows)
	args  []any            // reused arguments of the log inserts

	merges atomic.Int64 // log merges committed
}

// sqliteStmts are the SQLite writer's statements. They are prepared once on the pool;
// database/sql then keeps one prepared copy per connection, and a batch binds them to
// its transaction with Tx.StmtContext, so no batch compiles SQL.
type sqliteStmts struct {
	insert, insertN, byClient, delete *sql.Stmt
	// The reads behind the client-id filter and End (sqlitecache.go); status reads the
	// session's status in the batch transaction, so a message and the end of its chat
	// are ordered.
	bySeq, clientIDs, end, status *sql.Stmt
	// The message log (messagelog.go).
	deleteLog, logParts, moveLog, trimLog *sql.Stmt
}

// list returns every statement with its SQL.
func (st *sqliteStmts) list() stmtList {
	return stmtList{
		{&st.insert, sqliteInsert}, {&st.insertN, sqliteInsertN},
		{&st.byClient, sqliteByClient}, {&st.delete, `DELETE FROM messages WHERE session_id = ?`},
		{&st.bySeq, sqliteBySeq}, {&st.clientIDs, sqliteClientIDs}, {&st.end, endSession},
		{&st.status, `SELECT status FROM sessions WHERE id = ?`},
		{&st.deleteLog, sqliteDeleteLog}, {&st.logParts, sqliteLogParts}, {&st.moveLog, sqliteMoveLog},
		{&st.trimLog, sqliteTrimLog},
	}
}

// bind returns the statements bound to tx.
func (st *sqliteStmts) bind(ctx context.Context, tx *sql.Tx) sqliteStmts {
	var out sqliteStmts
	st.list().bindTo(ctx, tx, out.list())
	return out
}

func newSQLiteWriter(ctx context.Context, loop *writer) (*sqliteWriter, error) {
	d := loop.d
	w := &sqliteWriter{loop: loop, d: d, seqs: make(map[string]int64), cache: newSQLiteCache(), log: messageLog{mergeAt: mergeFirst}}
	if err := w.prepared.list().prepare(ctx, d.db); err != nil {
		w.prepared.list().close()
		return nil, dbErr(err, "prepare message statements")
	}
	conn, err := d.db.Conn(ctx)
	if err != nil {
		w.prepared.list().close()
		return nil, dbErr(err, "open the writer's connection")
	}
	w.conn = conn
	if err := w.log.load(ctx, w.prepared.logParts); err != nil {
		w.close()
		return nil, dbErr(err, "read the message log")
	}
	return w, nil
}

func (w *sqliteWriter) close() {
	w.prepared.list().close()
	_ = w.conn.Close()
}

// begin starts a write transaction on the writer's own connection.
func (w *sqliteWriter) begin(ctx context.Context) (*sql.Tx, error) { return w.conn.BeginTx(ctx, nil) }

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

// commitBatch runs the batch in one transaction. Its context has no Done, which saves
// the driver an interrupt watch on every statement.
func (w *sqliteWriter) commitBatch(batch []*request, _ bool) error {
	ctx := context.Background()
	tx, err := w.begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	st := w.prepared.bind(ctx, tx)
	w.rows = w.rows[:0]
	for _, r := range batch {
		if err := w.apply(ctx, st, r); err != nil {
			return err
		}
	}
	if err := w.flushRows(ctx, st); err != nil {
		return err
	}
	return tx.Commit()
}

// apply performs one request inside the batch transaction.
func (w *sqliteWriter) apply(ctx context.Context, st sqliteStmts, r *request) error {
	r.dup, r.deleted, r.won, r.err = false, 0, false, nil
	if r.op != opAppend {
		if err := w.flushRows(ctx, st); err != nil { // a delete or an end comes after them
			return err
		}
	}
	switch r.op {
	case opDelete:
		return w.deleteSession(ctx, st, r)
	case opEnd:
		return w.endSession(ctx, st, r)
	}
	r.out = r.in
	return w.appendMessage(ctx, st, r)
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

// deleteSession deletes the session's messages, in both tables; later appends start
// again at seq 1.
func (w *sqliteWriter) deleteSession(ctx context.Context, st sqliteStmts, r *request) error {
	s := r.in.SessionID
	var err error
	if r.deleted, err = execCount(ctx, st.delete, s); err != nil {
		return err
	}
	part := logPart(s)
	n, err := execCount(ctx, st.deleteLog, part, s)
	if err != nil {
		return err
	}
	r.deleted += n
	w.log.removed(part, n)
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
			err = refuseAfterEnd(w.byClient(ctx, st, s, r.in.ClientID), r)
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
func (w *sqliteWriter) findStored(ctx context.Context, st sqliteStmts, r *request, seq int64) (bool, error) {
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
func (w *sqliteWriter) clientIDs(ctx context.Context, st sqliteStmts, session string) (map[uint64]int64, error) {
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

// byClient reads the session's message with the client id, from either table.
func (w *sqliteWriter) byClient(ctx context.Context, st sqliteStmts, session, clientID string) *sql.Row {
	return st.byClient.QueryRowContext(ctx, session, clientID, logPart(session))
}
