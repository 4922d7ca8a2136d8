package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"parley/internal/chat"
)

// sqliteWriter is the SQLite side of the writer: the file belongs to this process and
// messages are appended only by it, each under its chat's lock, so it remembers each
// chat's last seq and client ids between appends (sqlitecache.go); an append writes
// its message to the message log on the caller's goroutine (appendNow, msglog.go),
// the writer goroutine merges the pending messages into message_chunks (pending.go),
// and End runs in the writer's batches holding its chat's lock, so messages and the
// end of their chat stay ordered.
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

	// No lock is common to every append but the log's, held only to copy a record.
	// An append (appendNow) holds its chat's lock (chatMem.mu) from its checks to its
	// place among the pending messages, and the writer's batches (End,
	// DeleteSession) hold the locks of their chats throughout, so a chat's seq, ids
	// and status and the order of its appends and its end have one owner at a time.
	// Merges take neither: they only move pending messages (under the pending set's
	// shard locks).
	lmu     sync.Mutex   // the log lock: the log's files, segments and buffer
	log     *msgLog      // the message log (msglog.go)
	closed  atomic.Bool  // appends are refused
	cache   *sqliteCache // each chat's seq, client ids and status, kept between appends
	pending *pendingSet  // the DB's: messages not yet merged (pending.go)
	reads   sqliteStmts  // status and chunksAfter prepared on the pool, for appends

	// This batch (the writer goroutine's): the chats it holds, and those a delete
	// emptied (drops).
	held   []heldChat
	drops  []string     // chats this batch deleted, dropped from pending once it commits
	blob   []byte       // the merge's reused encoding buffer
	chunks chunkEncoder // and its chunk encoder

	appended atomic.Bool  // an append since the writer's last tick
	merges   atomic.Int64 // merges committed
	ready    bool         // started: close merges what is pending
}

// heldChat is a chat whose lock the writer's batch holds.
type heldChat struct {
	session string
	c       *chatMem
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
	// The batch rows of message_pending an earlier version left (read and trimmed at start).
	trimBatch, trimDrop, batches, drops *sql.Stmt
}

// sqliteStatus reads whether a session still takes messages.
const sqliteStatus = `SELECT status FROM sessions WHERE id = ?`

// list returns every statement with its SQL.
func (st *sqliteStmts) list() stmtList {
	return stmtList{
		{&st.begin, `BEGIN IMMEDIATE`}, {&st.commit, `COMMIT`}, {&st.rollback, `ROLLBACK`},
		{&st.chunksAfter, sqliteChunksAfter}, {&st.countChunks, sqliteChunkCount},
		{&st.deleteChunks, sqliteChunkDelete}, {&st.addChunk, sqliteChunkAdd}, {&st.end, endSession},
		{&st.status, sqliteStatus},
		{&st.trimBatch, `DELETE FROM message_pending WHERE id = ?`},
		{&st.trimDrop, `DELETE FROM message_pending_drops WHERE session_id = ? AND through_id = ?`},
		{&st.batches, `SELECT id, batch FROM message_pending ORDER BY id`},
		{&st.drops, `SELECT session_id, through_id FROM message_pending_drops`},
	}
}

func newSQLiteWriter(ctx context.Context, loop *writer) (*sqliteWriter, error) {
	d := loop.d
	w := &sqliteWriter{loop: loop, d: d, cache: newSQLiteCache(), pending: d.pending}
	conn, err := d.db.Conn(ctx)
	if err != nil {
		return nil, dbErr(err, "open the writer's connection")
	}
	w.conn = conn
	if err := w.prepared.list().prepare(ctx, conn); err != nil {
		w.close()
		return nil, dbErr(err, "prepare message statements")
	}
	if err := (stmtList{{&w.reads.status, sqliteStatus}, {&w.reads.chunksAfter, sqliteChunksAfter}}).prepare(ctx, d.db); err != nil {
		w.close()
		return nil, dbErr(err, "prepare message statements")
	}
	// The writer touches a few pages per merge (the end of message_chunks and its
	// index), and SQLite walks its whole page cache at the end of every
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
	// Batch rows an earlier version left are merged before the log is read back, so
	// every pending message from now on is in the log, newer than anything stored.
	for w.pending.count() > 0 {
		moved, err := w.merge(w.pending.due(true, time.Now()))
		if err != nil {
			w.close()
			return nil, dbErr(err, "merge the pending messages")
		}
		w.pending.resize(moved, time.Millisecond)
	}
	if w.log, err = openMsgLog(d.path); err != nil {
		w.close()
		return nil, err
	}
	if err := w.replayLog(ctx); err != nil {
		w.close()
		return nil, dbErr(err, "read the message log %s", w.log.dir)
	}
	w.ready = true
	return w, nil
}

// writerCacheKiB is the writer connection's page cache (cache_size, in KiB); readers
// keep sqlitePragmas' larger one.
const writerCacheKiB = "2048"

// close refuses further appends and waits for those under way, merges what is
// pending (up to maxMergesPerTick merges; the rest is read back from the log at the
// next start), closes the log and releases the statements and the connection.
func (w *sqliteWriter) close() {
	w.closed.Store(true)
	w.cache.each(func(c *chatMem) {
		c.mu.Lock() // an append under way holds it; later ones see closed
		c.mu.Unlock()
	})
	if w.ready {
		w.mergeIfDue(true)
	}
	if w.log != nil {
		w.lmu.Lock()
		if err := w.log.close(); err != nil {
			w.d.log.Warn("closing the message log failed", "err", err)
		}
		w.lmu.Unlock()
	}
	w.prepared.list().close()
	(stmtList{{&w.reads.status, ""}, {&w.reads.chunksAfter, ""}}).close()
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

// idleEvery: merges run on the writer's tick, beside the appends.
func (w *sqliteWriter) idleEvery() time.Duration { return mergeTick }

func (w *sqliteWriter) committed() { w.mergeIfDue(false) }

// idle merges what is due, or everything once no append came for a tick.
func (w *sqliteWriter) idle() { w.mergeIfDue(!w.appended.Swap(false)) }

// rolledBack drops the seq and client-id state of the batch's sessions.
func (w *sqliteWriter) rolledBack(batch []*request) {
	for _, r := range batch {
		c := w.cache.lock(r.in.SessionID)
		c.forget()
		c.mu.Unlock()
	}
}

// commitBatch runs the batch in one transaction, holding the lock of each of its
// chats, then applies what it did to the pending messages in memory. Its context has
// no Done, which saves the driver an interrupt watch on every statement.
func (w *sqliteWriter) commitBatch(batch []*request, _ bool) error {
	for _, r := range batch {
		w.holdChat(r.in.SessionID)
	}
	defer func() {
		for i, h := range w.held {
			h.c.mu.Unlock()
			w.held[i] = heldChat{}
		}
		w.held = w.held[:0]
	}()
	ctx := context.Background()
	tx, err := w.begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	st := w.prepared
	w.drops = w.drops[:0]
	defer clear(w.drops)
	for _, r := range batch {
		if err := w.apply(ctx, st, r); err != nil {
			return err
		}
	}
	if err := tx.Commit(); err != nil {
		return err
	}
	if len(w.drops) > 0 {
		var refs []pendingRef
		for _, s := range w.drops {
			refs = append(refs, w.pending.drop(s)...)
		}
		w.unlive(w.pending.released(refs))
	}
	return nil
}

// holdChat takes the lock of session's chat for the batch, unless it holds it already.
func (w *sqliteWriter) holdChat(session string) {
	if w.heldChat(session) == nil {
		w.held = append(w.held, heldChat{session, w.cache.lock(session)})
	}
}

// heldChat returns the batch's entry of session's chat, nil if it holds none.
func (w *sqliteWriter) heldChat(session string) *chatMem {
	for _, h := range w.held {
		if h.session == session {
			return h.c
		}
	}
	return nil
}

// logTimingEvery: one log write in so many of each chat's (its first, then every
// logTimingEvery-th) is timed and recorded in the store's commit metrics
// (parley_store_commit_seconds, parley_store_batch_size): two clock reads and two
// shared histograms per message were about 2 % of the server's CPU at R=100, for a
// distribution a sample shows as well.
const logTimingEvery = 16

// maxKeptRecord bounds the record buffer a chat keeps between appends (chatMem.rec):
// a short message's record fits, and a chat that once sent a long one does not hold
// its 16 KB for as long as it is remembered.
const maxKeptRecord = 1024

// appendNow stores r's message at once, on the caller's goroutine: the checks and
// the seq under its chat's lock, then one record in the message log and the message
// among the pending ones, still under it, so a chat's records, pending messages and
// seqs keep one order and a resend finds what the last append stored. Its answer is
// in r (out, dup, err), as the writer's would be.
func (w *sqliteWriter) appendNow(ctx context.Context, r *request) {
	c := w.cache.lock(r.in.SessionID)
	defer c.mu.Unlock()
	if w.closed.Load() {
		r.err = chat.Errorf(chat.EUnavailable, "the message store is closed")
		return
	}
	r.out, r.dup, r.err = r.in, false, nil
	stored, err := w.appendMessage(ctx, w.reads, r, c)
	if err != nil {
		c.forget()
		r.err = dbErr(err, "store messages")
		return
	}
	if !stored {
		return // a duplicate or a refusal, answered in r
	}
	c.rec = messageRecord(c.rec, &r.out)
	timed := c.writes%logTimingEvery == 0
	c.writes++
	var start time.Time
	if timed {
		start = time.Now()
	}
	w.lmu.Lock()
	seg, err := w.log.appendMessage(c.rec)
	w.lmu.Unlock()
	if cap(c.rec) > maxKeptRecord {
		c.rec = nil // a long message's buffer is not kept for each chat
	}
	if err != nil {
		c.forget()
		w.d.log.Error("writing to the message log failed", "err", err)
		r.err = chat.Wrap(chat.EUnavailable, err, "store messages")
		return
	}
	if timed {
		w.loop.metrics.Load().StoreCommitted(1, max(time.Since(start), 1))
	}
	if !w.appended.Load() {
		w.appended.Store(true)
	}
	sh := c.pending
	sh.mu.Lock()
	w.pending.addLogged(sh, &r.out, seg)
	sh.mu.Unlock()
}

// beforeCheckpoint hands the checkpointer the message log's part in a checkpoint:
// it syncs the log's segment files now (so a power cut loses no more of the log than
// of the database), and returns what to run once the checkpoint has synced every
// frame: delete the segments emptied before it began. Nil once the log is closed.
func (w *sqliteWriter) beforeCheckpoint() func() {
	w.lmu.Lock()
	if w.closed.Load() || w.log == nil {
		w.lmu.Unlock()
		return nil
	}
	files, current, emptied := w.log.beforeCheckpoint()
	w.lmu.Unlock()
	for _, lf := range files {
		if err := lf.syncClose(); err != nil {
			w.d.log.Warn("syncing the message log failed", "err", err)
		}
	}
	if current.f != nil {
		if err := current.sync(); err != nil && !errors.Is(err, os.ErrClosed) {
			w.d.log.Warn("syncing the message log failed", "err", err)
		}
	}
	return func() {
		w.lmu.Lock()
		gone, fs := w.log.covered(emptied), w.log.fs
		w.lmu.Unlock()
		if kept := w.log.remove(gone, fs); len(kept) > 0 {
			w.d.log.Warn("deleting merged message log segments failed; the next checkpoint tries again", "segments", len(kept))
			w.lmu.Lock()
			w.log.restore(kept)
			w.lmu.Unlock()
		}
	}
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
	// Appends never come here (DB.Append calls appendNow); one that did would be
	// answered without a log record, so it is refused rather than lost.
	r.err = chat.Errorf(chat.EUnavailable, "a SQLite append reached the writer's batch")
	return nil
}

// sessionEnded reports whether the chat's row says it no longer takes messages. A
// session without a row here (sessions kept in another database) is not ended: the
// caller's own check is all there is then. One read per session.
func (w *sqliteWriter) sessionEnded(ctx context.Context, st sqliteStmts, session string, c *chatMem) (bool, error) {
	if c.status != statusUnread {
		return c.status == statusEnded, nil
	}
	var status string
	err := st.status.QueryRowContext(ctx, session).Scan(&status)
	if errors.Is(err, sql.ErrNoRows) {
		err, status = nil, string(chat.StatusInProgress)
	}
	if err != nil {
		return false, err
	}
	c.status = statusOpen
	if status != string(chat.StatusInProgress) {
		c.status = statusEnded
	}
	return c.status == statusEnded, nil
}

// deleteSession deletes the session's messages, stored and pending; later appends
// start again at seq 1. Pending ones are dropped from memory once the batch commits,
// and marked, so a restart does not read them back from their batch rows.
func (w *sqliteWriter) deleteSession(ctx context.Context, st sqliteStmts, r *request) error {
	s := r.in.SessionID
	if err := st.countChunks.QueryRowContext(ctx, s).Scan(&r.deleted); err != nil {
		return err
	}
	n := int64(0)
	w.eachPending(s, func(*chat.Message) bool { n++; return true })
	if n > 0 || r.deleted > 0 {
		// The drop record goes first: were the process to stop between the two, the
		// restart reads the chat's log records as dropped and its stored messages as
		// not deleted yet, and the delete (a purge's) is asked again; the other way
		// round, a restart would bring back messages already deleted.
		w.lmu.Lock()
		err := w.log.appendDrop(s)
		w.lmu.Unlock()
		if err != nil {
			return err
		}
	}
	if _, err := st.deleteChunks.ExecContext(ctx, s); err != nil {
		return err
	}
	if n > 0 {
		w.drops = append(w.drops, s)
		r.deleted += n
	}
	w.heldChat(s).forget() // reloaded, empty, by the next append
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
	// Read again by the next append, once this transaction has committed: the batch
	// holds the chat's lock until then.
	w.heldChat(s).status = statusUnread
	return nil
}

// appendMessage gives r's message its seq and reports true, unless the chat holds
// its client id already (r answered as a duplicate) or refuses it (r.err). c is the
// chat's entry, its lock held.
func (w *sqliteWriter) appendMessage(ctx context.Context, st sqliteStmts, r *request, c *chatMem) (bool, error) {
	s := r.in.SessionID
	if ended, err := w.sessionEnded(ctx, st, s, c); err != nil || ended {
		if err == nil {
			c.forget() // no more appends: free its ids
			err = refuseAfterEnd(w.byClient(ctx, st, s, r.in.ClientID, &r.out), r)
		}
		return false, err
	}
	ids, err := w.clientIDs(ctx, st, s, c)
	if err != nil {
		return false, err
	}
	h := w.cache.hash(r.in.ClientID)
	if seq, ok := ids[h]; ok {
		if found, err := w.findStored(ctx, st, r, seq); found || err != nil {
			return false, err
		}
	}
	if c.pending == nil {
		c.pending = w.pending.shard(s)
	}
	if c.pending.isFull() {
		r.err = chat.Errorf(chat.EUnavailable, "too many messages wait to be stored; try again shortly")
		return false, nil
	}
	c.seq++
	r.out.Seq = c.seq
	ids[h] = c.seq // after a collision the newer seq wins; the older id is found by findStored's lookup
	c.added()
	return true, nil
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

// clientIDs returns the chat's client-id filter, loading it (and the chat's last
// seq) from its rows on first use.
func (w *sqliteWriter) clientIDs(ctx context.Context, st sqliteStmts, session string, c *chatMem) (map[uint64]int64, error) {
	if c.ids != nil {
		return c.ids, nil
	}
	ids := make(map[uint64]int64)
	var last int64
	add := func(m *chat.Message) bool {
		ids[w.cache.hash(m.ClientID)] = m.Seq
		last = max(last, m.Seq)
		return true
	}
	// The pending messages first, then the stored ones: a merge committing in
	// between moves messages from the first to the second, so they are seen twice
	// (harmless) rather than not at all (a seq given twice).
	w.eachCommitted(session, add)
	if err := readChunks(ctx, st.chunksAfter, session, 0, add); err != nil {
		return nil, err
	}
	c.ids, c.seq = ids, last
	c.loaded(len(ids))
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
