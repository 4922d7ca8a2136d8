package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"parley/internal/chat"
	"parley/internal/metrics"
)

// Group commit. Every Append (and DeleteSession) is handed to one writer goroutine.
// The writer takes the first waiting request, then everything else already waiting (up
// to maxBatch), writes them all in one transaction with prepared statements, commits,
// and only then answers each caller: an answer means durable. While a transaction
// commits, new requests queue up and form the next batch, so batches grow with load
// and a commit's fsync is shared by all of them. There is no goroutine per message.
//
// Seqs. A session's next seq is its last seq plus one, with no gaps and no repeats:
//
//   - SQLite: the file belongs to this process and only the writer inserts messages,
//     so the writer remembers each session's last seq between batches (loaded with
//     the session's client ids on first use, see sqlitecache.go). A failed
//     transaction forgets the sessions it touched, since their rows were rolled back.
//   - MySQL: several replicas append to the same session. Each batch transaction first
//     locks the row of every session it touches in message_seqs (creating it when
//     missing, in sorted order so two replicas cannot deadlock on each other's
//     sessions), reads last_seq under that lock, inserts, writes last_seq back and
//     commits. A replica appending to the same session waits for the lock and then
//     reads the committed value, so no cache survives a transaction. A deadlock or
//     lock-wait timeout reruns the whole batch. Each step is one statement for the
//     whole batch (writer_mysql.go).
//
// Dedupe. SQLite: the writer remembers a hash of every client id of each session it
// appends to (see sqlitecache.go); a hit is confirmed by reading that row, so a hash
// collision costs a read, never a lost message. MySQL: the insert does nothing when
// (session_id, client_id) exists (ON DUPLICATE KEY UPDATE no-op, which reports 0 rows);
// then the batch reruns, first reading the stored rows of its client ids, and answers
// those as duplicates (writer_mysql.go). A repeat inside one batch is answered from
// the batch.
//
// Queue. Callers append to a slice under a mutex and nudge the writer; the writer swaps
// the slice out whole. A caller never waits for the writer to take its request, only
// for the answer, so a message costs one goroutine wake-up for its answer and none for
// its hand-over.
const (
	maxBatch          = 1000
	maxCachedSessions = 10000
	batchTimeout      = 30 * time.Second // MySQL
	maxBatchAttempts  = 5
)

// writeOp is what a request asks the writer to do.
type writeOp uint8

const (
	opAppend writeOp = iota + 1
	opDelete
	opEnd // SQLite: End goes through the writer, so the writer always knows what has ended
)

// request is one caller's Append or DeleteSession; pooled, so the hot path does not
// allocate one per message.
type request struct {
	op      writeOp
	in      chat.Message // message to append (SessionID alone for a delete; From, CreatedAt: who ended and when)
	out     chat.Message // stored message
	dup     bool
	deleted int64
	won     bool // opEnd: this request ended the chat
	err     error
	done    chan struct{} // buffered(1): the writer never waits for a caller
}

var requestPool = sync.Pool{New: func() any { return &request{done: make(chan struct{}, 1)} }}

func newRequest(op writeOp) *request {
	r := requestPool.Get().(*request)
	r.op = op
	return r
}

// release clears r and returns it to the pool.
func (r *request) release() {
	done := r.done
	*r = request{done: done}
	requestPool.Put(r)
}

// msgKey identifies a message for dedupe within a batch.
type msgKey struct{ session, client string }

// writer is the single goroutine that writes messages.
type writer struct {
	d    *DB
	quit chan struct{}
	done chan struct{}

	mu      sync.Mutex
	pending []*request    // requests not yet taken by the writer
	closed  bool          // set by stop: pending is refused from then on
	wake    chan struct{} // buffered(1): there may be pending requests

	inbox    []*request // the requests taken from pending, committed maxBatch at a time
	batch    []*request
	seen     map[msgKey]*request     // MySQL
	seqs     map[string]int64        // session → last seq stored
	ended    map[string]bool         // MySQL: session → ended, as this transaction saw it (SQLite: see cache)
	cache    sqliteCache             // SQLite: client ids and ended flags kept between batches
	loaded   map[string]int64        // MySQL: last_seq as read under lock this batch
	sessions []string                // MySQL: distinct sessions of the batch, sorted
	stored   map[msgKey]chat.Message // MySQL: on a rerun, stored messages of the batch's client ids

	// rereadStored (MySQL) is set while a batch reruns because an insert met a client
	// id stored before (writer_mysql.go).
	rereadStored bool

	prepared stmts      // on the pool; bound to each batch's transaction
	mysql    mysqlStmts // MySQL: the variable-length statements, likewise

	// conn (SQLite) is the one pooled connection the writer keeps for itself. SQLite
	// drops a connection's page cache whenever another connection has written since
	// its last transaction; were every batch on whichever connection the pool handed
	// out, every batch would find its cache dropped by the previous one and read each
	// page it touches again.
	conn *sql.Conn

	log  messageLog // SQLite: rows waiting in message_log, by part (messagelog.go)
	rows []*request // SQLite: this batch's messages not yet inserted (flushRows)
	args []any      // SQLite: reused arguments of the log inserts
	busy bool       // a batch was committed since the last idle tick

	// batches and batched count transactions and the requests they carried, so tests
	// and benchmarks can see that commits are shared.
	batches, batched atomic.Int64
	merges           atomic.Int64 // SQLite: log merges committed
	retries          atomic.Int64 // MySQL: batch reruns after a lost lock race

	// metrics records each commit's size and time; set by SetMetrics, maybe while
	// the writer runs.
	metrics atomic.Pointer[metrics.Metrics]
}

// SetMetrics makes the message writer record each group commit (batch size and
// commit time) in m. A nil m records nothing.
func (d *DB) SetMetrics(m *metrics.Metrics) {
	if d.w != nil {
		d.w.metrics.Store(m)
	}
}

func newWriter(ctx context.Context, d *DB) (*writer, error) {
	w := &writer{
		d: d, quit: make(chan struct{}), done: make(chan struct{}), wake: make(chan struct{}, 1),
		seen: make(map[msgKey]*request), seqs: make(map[string]int64), ended: make(map[string]bool), loaded: make(map[string]int64),
		stored: make(map[msgKey]chat.Message),
		cache:  newSQLiteCache(), log: messageLog{mergeAt: mergeFirst},
	}
	if err := w.prepared.prepare(ctx, d.db, d.dialect); err != nil {
		w.prepared.close()
		return nil, dbErr(err, "prepare message statements")
	}
	if d.dialect == dialectSQLite {
		conn, err := d.db.Conn(ctx)
		if err != nil {
			w.prepared.close()
			return nil, dbErr(err, "open the writer's connection")
		}
		w.conn = conn
	}
	if err := w.loadLog(ctx); err != nil {
		w.prepared.close()
		return nil, dbErr(err, "read the message log")
	}
	return w, nil
}

// do hands r to the writer and waits for the answer. If ctx ends first, the caller
// leaves with an error (the write may still commit) and r is not reused.
func (w *writer) do(ctx context.Context, r *request) error {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		r.release()
		return chat.Errorf(chat.EUnavailable, "the message store is closed")
	}
	w.pending = append(w.pending, r)
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default: // a nudge is already waiting
	}
	select {
	case <-r.done:
		return nil
	case <-ctx.Done():
		return chat.Wrap(chat.EUnavailable, ctx.Err(), "waiting for the message store")
	}
}

// stop makes the writer commit what is queued and exit, and waits for it.
func (w *writer) stop() {
	close(w.quit)
	<-w.done
	w.prepared.close()
	w.mysql.close()
	if w.conn != nil {
		_ = w.conn.Close()
	}
}

// begin starts a write transaction, on the writer's own connection when it has one.
func (w *writer) begin(ctx context.Context) (*sql.Tx, error) {
	if w.conn != nil {
		return w.conn.BeginTx(ctx, nil)
	}
	return w.d.db.BeginTx(ctx, nil)
}

// run is the writer loop: wait for a nudge, take everything pending, commit it.
func (w *writer) run() {
	defer close(w.done)
	var idle <-chan time.Time // SQLite: drains the message log when quiet; MySQL has none
	if w.d.dialect == dialectSQLite {
		t := time.NewTicker(mergeIdle)
		defer t.Stop()
		idle = t.C
	}
	for {
		select {
		case <-w.wake:
			runtime.Gosched() // let the senders already running hand in theirs: bigger batches
			w.take(false)
		case <-idle:
			if !w.busy {
				w.mergeIfDue(true)
			}
			w.busy = false
			continue
		case <-w.quit:
			w.take(true) // refuses anything later, so nothing is left unanswered
			w.commitInbox()
			return
		}
		w.commitInbox()
		w.busy = true
		w.mergeIfDue(false)
	}
}

// take moves the pending requests to the inbox; last closes the queue behind them.
func (w *writer) take(last bool) {
	w.mu.Lock()
	w.inbox, w.pending = w.pending, w.inbox[:0]
	w.closed = w.closed || last
	w.mu.Unlock()
}

// commitInbox commits the inbox in batches of at most maxBatch.
func (w *writer) commitInbox() {
	for i := 0; i < len(w.inbox); i += maxBatch {
		w.batch = append(w.batch[:0], w.inbox[i:min(i+maxBatch, len(w.inbox))]...)
		w.flush()
	}
	clear(w.inbox) // the callers own their requests again
	w.inbox = w.inbox[:0]
}

// flush commits the batch and answers every caller in it.
func (w *writer) flush() {
	start := time.Now()
	err := w.commit()
	if err == nil {
		w.metrics.Load().StoreCommitted(len(w.batch), time.Since(start))
	}
	w.batches.Add(1)
	w.batched.Add(int64(len(w.batch)))
	for i, r := range w.batch {
		if err != nil {
			r.err = err
		}
		r.done <- struct{}{}
		w.batch[i] = nil
	}
	clear(w.seen) // holds answered requests, which their callers now reuse
}

// commit writes the batch, rerunning it when MySQL reports a lost lock race, or met a
// client id stored before (errStoredBefore; rerun once, reading the stored ids).
func (w *writer) commit() error {
	defer func() { w.rereadStored = false }()
	for attempt := 1; ; attempt++ {
		err := w.commitOnce()
		if err == nil {
			return nil
		}
		w.forgetBatchSessions()
		if errors.Is(err, errStoredBefore) && !w.rereadStored {
			w.rereadStored = true
			attempt-- // not a failure: the common batch does not pay for reading ids first
			continue
		}
		if w.d.dialect == dialectMySQL && isRetryable(err) && attempt < maxBatchAttempts {
			w.retries.Add(1)
			continue
		}
		w.d.log.Error("message batch failed", "messages", len(w.batch), "attempts", attempt, "err", err)
		return dbErr(err, "store messages")
	}
}

// stmts are the writer's statements. They are prepared once on the pool; database/sql
// then keeps one prepared copy per connection, and a batch binds them to its
// transaction with Tx.StmtContext, so no batch compiles SQL.
type stmts struct {
	insert, byClient, delete *sql.Stmt
	// SQLite only: the reads behind the writer's client-id filter, and End
	// (sqlitecache.go); the message log (messagelog.go).
	bySeq, clientIDs, end, insertN        *sql.Stmt
	deleteLog, logParts, moveLog, trimLog *sql.Stmt
	// SQLite: status reads the session's status in the batch transaction, so a message
	// and the end of its chat are ordered (MySQL reads them all at once: readStatus).
	status *sql.Stmt
	// MySQL only: drops the message_seqs row of a session left empty (the other
	// message_seqs statements vary in length: writer_mysql.go).
	seqDelete *sql.Stmt
}

// list returns pointers to every statement, with its SQL for the dialect ("" when unused).
func (st *stmts) list(d dialect) []struct {
	dst   **sql.Stmt
	query string
} {
	insert := `INSERT INTO messages (` + messageCols + `) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) `
	var seqDelete, status, bySeq, clientIDs, end, insertN string
	var deleteLog, logParts, moveLog, trimLog string
	byClient := `SELECT ` + messageCols + ` FROM messages WHERE session_id = ? AND client_id = ?`
	if d == dialectMySQL {
		insert = "" // multi-row inserts: writer_mysql.go
		seqDelete = `DELETE FROM message_seqs WHERE session_id = ?`
	} else {
		status = `SELECT status FROM sessions WHERE id = ?`
		insert, byClient, bySeq, clientIDs, end = sqliteInsert, sqliteByClient, sqliteBySeq, sqliteClientIDs, endSession
		insertN = sqliteInsertN
		deleteLog, logParts, moveLog, trimLog = sqliteDeleteLog, sqliteLogParts, sqliteMoveLog, sqliteTrimLog
	}
	return []struct {
		dst   **sql.Stmt
		query string
	}{
		{&st.insert, insert},
		{&st.byClient, byClient},
		{&st.delete, `DELETE FROM messages WHERE session_id = ?`},
		{&st.status, status},
		{&st.seqDelete, seqDelete},
		{&st.bySeq, bySeq}, {&st.clientIDs, clientIDs}, {&st.end, end}, {&st.insertN, insertN},
		{&st.deleteLog, deleteLog}, {&st.logParts, logParts}, {&st.moveLog, moveLog}, {&st.trimLog, trimLog},
	}
}

// prepare prepares the dialect's statements on the pool.
func (st *stmts) prepare(ctx context.Context, db *sql.DB, d dialect) error {
	for _, p := range st.list(d) {
		if p.query == "" {
			continue
		}
		var err error
		if *p.dst, err = db.PrepareContext(ctx, p.query); err != nil {
			return err
		}
	}
	return nil
}

// bind returns the statements bound to tx.
func (st *stmts) bind(ctx context.Context, tx *sql.Tx, d dialect) stmts {
	var out stmts
	src, dst := st.list(d), out.list(d)
	for i := range src {
		if *src[i].dst != nil {
			*dst[i].dst = tx.StmtContext(ctx, *src[i].dst)
		}
	}
	return out
}

// close closes the prepared statements.
func (st *stmts) close() {
	for _, p := range st.list(0) {
		if *p.dst != nil {
			_ = (*p.dst).Close()
		}
	}
}

// commitOnce runs the batch in one transaction.
func (w *writer) commitOnce() error {
	// A MySQL batch gets a deadline against a stalled server or network. A SQLite batch
	// only waits for the file's lock, which busy_timeout bounds, and a context without
	// Done saves the driver an interrupt watch on every statement.
	ctx := context.Background()
	if w.d.dialect == dialectMySQL {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, batchTimeout)
		defer cancel()
	}
	tx, err := w.begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	st := w.prepared.bind(ctx, tx, w.d.dialect)
	clear(w.seen)
	clear(w.ended)
	if w.d.dialect == dialectMySQL {
		if err := w.commitMySQL(ctx, tx, st); err != nil {
			return err
		}
		return tx.Commit()
	}
	w.rows = w.rows[:0]
	for _, r := range w.batch {
		if err := w.apply(ctx, st, r); err != nil {
			return err
		}
	}
	if err := w.flushRows(ctx, st); err != nil {
		return err
	}
	return tx.Commit()
}

// apply (SQLite) performs one request inside the batch transaction.
func (w *writer) apply(ctx context.Context, st stmts, r *request) error {
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
	return w.appendSQLite(ctx, st, r)
}

// sessionEnded (SQLite) reports whether the session's row says it no longer takes
// messages. A session without a row here (sessions kept in another database) is not
// ended: the caller's own check is all there is then. One read per session.
func (w *writer) sessionEnded(ctx context.Context, st stmts, session string) (bool, error) {
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

// refuseAfterEnd answers a message for an ended chat: a resend of a message stored
// before the end gets its original answer; anything new is refused with EChatEnded.
func (w *writer) refuseAfterEnd(ctx context.Context, st stmts, r *request) error {
	err := scanMessage(w.byClient(ctx, st, r.in.SessionID, r.in.ClientID), &r.out)
	if errors.Is(err, sql.ErrNoRows) {
		r.err = chat.Errorf(chat.EChatEnded, "This chat has ended; no more messages can be sent.")
		return nil
	}
	r.dup = err == nil
	return err
}

// deleteSession deletes the session's messages; later appends start again at seq 1.
func (w *writer) deleteSession(ctx context.Context, st stmts, r *request) error {
	s := r.in.SessionID
	res, err := st.delete.ExecContext(ctx, s)
	if err != nil {
		return err
	}
	if r.deleted, err = res.RowsAffected(); err != nil {
		return err
	}
	if w.d.dialect == dialectSQLite {
		part := logPart(s)
		res, err := st.deleteLog.ExecContext(ctx, part, s)
		if err != nil {
			return err
		}
		n, err := res.RowsAffected()
		if err != nil {
			return err
		}
		r.deleted += n
		w.log.removed(part, n)
	}
	w.seqs[s] = 0
	if w.d.dialect == dialectSQLite {
		delete(w.seqs, s) // reloaded, empty, by the next append
		w.cache.forget(s)
	}
	for k := range w.seen {
		if k.session == s {
			delete(w.seen, k)
		}
	}
	return nil
}

// forgetBatchSessions drops the seq state of the batch's sessions after a rollback.
func (w *writer) forgetBatchSessions() {
	for _, r := range w.batch {
		delete(w.seqs, r.in.SessionID)
		w.cache.forget(r.in.SessionID)
	}
}
