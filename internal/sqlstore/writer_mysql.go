package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/bits"
	"slices"
	"strings"
	"sync"
	"time"

	"parley/internal/chat"
)

// MySQL batches. A round trip to the server costs far more than the work it carries,
// so a batch runs a fixed handful of statements whatever its size, each covering every
// session or up to maxInsertRows messages of the batch:
//
//  1. one multi-row upsert creates the message_seqs row of every session of the batch
//     and locks them all, in session order (lockSeqs);
//  2. one SELECT … FOR UPDATE reads their last_seq (already locked by 1);
//  3. one SELECT … LOCK IN SHARE MODE reads every session's status (readStatus);
//  4. the messages, numbered in memory, go in with multi-row inserts (insertRows);
//  5. one multi-row upsert writes back the last_seq of the sessions that changed.
//
// Deadlocks. Every lock a batch takes on message_seqs is taken by statement 1, which
// lists the sessions sorted, so InnoDB locks them in that order; two replicas' batches
// therefore wait for each other but never in a cycle. The locking reads name the
// primary key (FORCE INDEX): on a small table MariaDB would otherwise scan it all and
// lock other batches' rows out of order, which deadlocked replicas several times a
// second. Should InnoDB still report a deadlock, the whole batch reruns
// (writer.commit).
//
// Dedupe. Inserts use ON DUPLICATE KEY UPDATE seq = seq, which stores nothing and
// counts 0 affected rows for a client id the session already holds. The message_seqs
// locks keep every other writer of these sessions out, so the ids stored now are all
// there will be until commit. When a chunk's count comes up short, the batch is rolled
// back and rerun once reading the stored messages of all its client ids first (one
// SELECT, readStored): a resend is rare, and the common batch pays nothing for it. A
// repeat inside the batch is answered from the batch (seen).
//
// Statements. Variable-length statements are built with placeholders only, and their
// length is rounded up to a power of two, padding with copies of the last value (an
// IN list or an upsert does not mind a repeat; a repeated message row is a duplicate
// and counts 0). So each kind has at most a dozen texts, prepared once on the pool and
// kept per connection by database/sql, and each runs in one round trip (go-sql-driver
// without interpolateParams would otherwise prepare, run and close each statement).

// maxInsertRows bounds the rows of one message insert (9 placeholders each).
const maxInsertRows = 64

// errStoredBefore reports that an insert met a client id the session already holds:
// the batch reruns, reading the stored messages first.
var errStoredBefore = errors.New("sqlstore: a message of the batch was stored before")

// mysqlKind names a variable-length MySQL statement of the writer.
type mysqlKind uint8

const (
	mySeqCreate mysqlKind = iota // create and lock message_seqs rows
	mySeqLock                    // read last_seq under the lock
	myStatus                     // read session statuses under a shared lock
	myInsert                     // insert messages
	mySeqSave                    // write last_seq back
	myKinds
)

// mysqlStmts holds the writer's variable-length statements, prepared on the pool on
// first use, by kind and size class (log2 of the padded length).
type mysqlStmts struct {
	mu    sync.Mutex
	byLen [myKinds][16]*sql.Stmt
}

// sizeClass returns the padded length of a list of n (a power of two) and its index.
func sizeClass(n int) (padded, class int) {
	class = bits.Len(uint(n - 1))
	return 1 << class, class
}

// stmt returns the statement of kind k for n values, bound to tx.
func (ms *mysqlStmts) stmt(ctx context.Context, db *sql.DB, tx *sql.Tx, k mysqlKind, n int) (*sql.Stmt, int, error) {
	padded, class := sizeClass(n)
	ms.mu.Lock()
	defer ms.mu.Unlock()
	st := ms.byLen[k][class]
	if st == nil {
		var err error
		if st, err = db.PrepareContext(ctx, mysqlQuery(k, padded)); err != nil {
			return nil, 0, err
		}
		ms.byLen[k][class] = st
	}
	return tx.StmtContext(ctx, st), padded, nil
}

// close closes the prepared statements.
func (ms *mysqlStmts) close() {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	for k := range ms.byLen {
		for i, st := range ms.byLen[k] {
			if st != nil {
				_ = st.Close()
				ms.byLen[k][i] = nil
			}
		}
	}
}

// mysqlQuery returns the SQL of kind k for n values: placeholders only.
func mysqlQuery(k mysqlKind, n int) string {
	list := func(item string) string { return strings.Repeat(item+", ", n-1) + item }
	switch k {
	case mySeqCreate:
		return `INSERT INTO message_seqs (session_id, last_seq) VALUES ` + list(`(?, 0)`) +
			` ON DUPLICATE KEY UPDATE last_seq = last_seq`
	case mySeqLock:
		return `SELECT session_id, last_seq FROM message_seqs FORCE INDEX (PRIMARY) WHERE session_id IN (` + list(`?`) + `) FOR UPDATE`
	case myStatus:
		return `SELECT id, status FROM sessions FORCE INDEX (PRIMARY) WHERE id IN (` + list(`?`) + `) LOCK IN SHARE MODE`
	case myInsert:
		return `INSERT INTO messages (` + messageCols + `) VALUES ` + list(`(?, ?, ?, ?, ?, ?, ?, ?, ?)`) +
			` ON DUPLICATE KEY UPDATE seq = seq`
	case mySeqSave:
		return `INSERT INTO message_seqs (session_id, last_seq) VALUES ` + list(`(?, ?)`) +
			` ON DUPLICATE KEY UPDATE last_seq = VALUES(last_seq)`
	}
	panic(fmt.Sprintf("sqlstore: unknown MySQL statement kind %d", k))
}

// padArgs repeats the last width arguments of args until they hold padded groups.
func padArgs(args []any, width, padded int) []any {
	last := args[len(args)-width:]
	for len(args) < padded*width {
		args = append(args, last...)
	}
	return args
}

// mysqlWriter is the MySQL side of the writer: several replicas append to the same
// sessions, so nothing about a session survives a batch; see the top of this file.
type mysqlWriter struct {
	d        *DB
	prepared mysqlFixedStmts // on the pool; bound to each batch's transaction
	mysql    mysqlStmts      // the variable-length statements, likewise

	seen     map[msgKey]*request     // the batch's first request of each client id
	seqs     map[string]int64        // session → last seq, as read under lock and counted up
	ended    map[string]bool         // session → ended, as this transaction saw it
	loaded   map[string]int64        // last_seq as read under lock this batch
	sessions []string                // distinct sessions of the batch, sorted
	stored   map[msgKey]chat.Message // on a rerun, stored messages of the batch's client ids
	rows     []*request              // this batch's messages not yet inserted (insertRows)
	args     []any                   // reused statement arguments

	// rereadStored is set while a batch reruns because an insert met a client id
	// stored before.
	rereadStored bool
}

// mysqlFixedStmts are the writer's fixed-length statements.
type mysqlFixedStmts struct {
	byClient, delete *sql.Stmt
	// seqDelete drops the message_seqs row of a session left empty.
	seqDelete *sql.Stmt
}

// list returns every statement with its SQL.
func (st *mysqlFixedStmts) list() stmtList {
	return stmtList{
		{&st.byClient, `SELECT ` + messageCols + ` FROM messages WHERE session_id = ? AND client_id = ?`},
		{&st.delete, `DELETE FROM messages WHERE session_id = ?`},
		{&st.seqDelete, `DELETE FROM message_seqs WHERE session_id = ?`},
	}
}

// bind returns the statements bound to tx.
func (st *mysqlFixedStmts) bind(ctx context.Context, tx *sql.Tx) mysqlFixedStmts {
	var out mysqlFixedStmts
	st.list().bindTo(ctx, tx, out.list())
	return out
}

func newMySQLWriter(ctx context.Context, d *DB) (*mysqlWriter, error) {
	w := &mysqlWriter{
		d: d, seen: make(map[msgKey]*request), seqs: make(map[string]int64), ended: make(map[string]bool),
		loaded: make(map[string]int64), stored: make(map[msgKey]chat.Message),
	}
	if err := w.prepared.list().prepare(ctx, d.db); err != nil {
		w.prepared.list().close()
		return nil, dbErr(err, "prepare message statements")
	}
	return w, nil
}

func (w *mysqlWriter) close() {
	w.prepared.list().close()
	w.mysql.close()
}

// retryable: a deadlock or lock-wait timeout reruns the whole batch.
func (w *mysqlWriter) retryable(err error) bool { return isRetryable(err) }

// MySQL keeps nothing between batches, so it has nothing to forget or tidy.
func (w *mysqlWriter) rolledBack([]*request)    {}
func (w *mysqlWriter) idleEvery() time.Duration { return 0 }
func (w *mysqlWriter) committed()               {}
func (w *mysqlWriter) idle()                    {}

// commitBatch writes the batch; when it met a client id stored before
// (errStoredBefore), it reruns once reading the stored ids first, and that rerun does
// not count as a failure: the common batch does not pay for reading ids first.
func (w *mysqlWriter) commitBatch(batch []*request, first bool) error {
	if first {
		w.rereadStored = false
	}
	defer clear(w.seen) // holds requests whose callers reuse them once answered
	err := w.commitOnce(batch)
	if errors.Is(err, errStoredBefore) && !w.rereadStored {
		w.rereadStored = true
		err = w.commitOnce(batch)
	}
	return err
}

// commitOnce runs the batch in one transaction, with a deadline against a stalled
// server or network.
func (w *mysqlWriter) commitOnce(batch []*request) error {
	ctx, cancel := context.WithTimeout(context.Background(), batchTimeout)
	defer cancel()
	tx, err := w.d.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	st := w.prepared.bind(ctx, tx)
	clear(w.seen)
	clear(w.ended)
	if err := w.commitMySQL(ctx, tx, st, batch); err != nil {
		return err
	}
	return tx.Commit()
}

// commitMySQL runs the batch in tx; see the top of this file.
func (w *mysqlWriter) commitMySQL(ctx context.Context, tx *sql.Tx, st mysqlFixedStmts, batch []*request) error {
	w.rows = w.rows[:0]
	if err := w.lockSeqs(ctx, tx, batch); err != nil {
		return err
	}
	if err := w.readStatus(ctx, tx); err != nil {
		return err
	}
	if err := w.readStored(ctx, tx, batch); err != nil {
		return err
	}
	for _, r := range batch {
		if err := w.applyMySQL(ctx, tx, st, r); err != nil {
			return err
		}
	}
	if err := w.insertRows(ctx, tx); err != nil {
		return err
	}
	return w.saveSeqs(ctx, tx, st)
}

// applyMySQL answers r from the batch or the stored rows, or numbers it and queues its
// row for insertRows.
func (w *mysqlWriter) applyMySQL(ctx context.Context, tx *sql.Tx, st mysqlFixedStmts, r *request) error {
	r.dup, r.deleted, r.won, r.err = false, 0, false, nil
	s := r.in.SessionID
	if r.op == opDelete {
		if err := w.insertRows(ctx, tx); err != nil { // the delete comes after them
			return err
		}
		for k := range w.stored {
			if k.session == s {
				delete(w.stored, k)
			}
		}
		return w.deleteSession(ctx, st, r)
	}
	r.out = r.in
	k := msgKey{s, r.in.ClientID}
	if first, ok := w.seen[k]; ok {
		r.out, r.dup = first.out, true
		return nil
	}
	if w.ended[s] {
		return refuseAfterEnd(scanMessage(st.byClient.QueryRowContext(ctx, s, r.in.ClientID), &r.out), r)
	}
	w.seen[k] = r
	if m, ok := w.stored[k]; ok {
		r.out, r.dup = m, true
		return nil
	}
	w.seqs[s]++
	r.out.Seq = w.seqs[s]
	w.rows = append(w.rows, r)
	return nil
}

// lockSeqs creates and locks the message_seqs row of every session of the batch, in
// sorted order, and loads last_seq under the lock. No seq state survives from earlier
// batches: another replica may have appended since.
func (w *mysqlWriter) lockSeqs(ctx context.Context, tx *sql.Tx, batch []*request) error {
	clear(w.seqs)
	clear(w.loaded)
	w.sessions = w.sessions[:0]
	for _, r := range batch {
		w.sessions = append(w.sessions, r.in.SessionID)
	}
	slices.Sort(w.sessions)
	w.sessions = slices.Compact(w.sessions)
	w.args = w.args[:0]
	for _, s := range w.sessions {
		w.args = append(w.args, s)
	}
	if err := w.execPadded(ctx, tx, mySeqCreate, 1); err != nil {
		return err
	}
	return w.queryPadded(ctx, tx, mySeqLock, func(rows *sql.Rows) error {
		var s string
		var last int64
		if err := rows.Scan(&s, &last); err != nil {
			return err
		}
		w.seqs[s], w.loaded[s] = last, last
		return nil
	})
}

// readStatus reads whether each session of the batch has ended. A session without a
// row here (sessions kept in another database) is not ended: the caller's own check
// is all there is then. The shared lock orders the batch and End: a message committed
// before the end is in the transcript, one after it is refused.
func (w *mysqlWriter) readStatus(ctx context.Context, tx *sql.Tx) error {
	// w.args still lists the sessions (lockSeqs).
	return w.queryPadded(ctx, tx, myStatus, func(rows *sql.Rows) error {
		var s, status string
		if err := rows.Scan(&s, &status); err != nil {
			return err
		}
		w.ended[s] = status != string(chat.StatusInProgress)
		return nil
	})
}

// execPadded runs kind k on w.args (groups of width values), padded to its size class.
// w.args keeps its unpadded values.
func (w *mysqlWriter) execPadded(ctx context.Context, tx *sql.Tx, k mysqlKind, width int) error {
	n := len(w.args)
	st, padded, err := w.mysql.stmt(ctx, w.d.db, tx, k, n/width)
	if err != nil {
		return err
	}
	_, err = st.ExecContext(ctx, padArgs(w.args, width, padded)...)
	w.args = w.args[:n]
	return err
}

// queryPadded runs query kind k on w.args, padded to its size class, and calls scan
// for each row. w.args keeps its unpadded values.
func (w *mysqlWriter) queryPadded(ctx context.Context, tx *sql.Tx, k mysqlKind, scan func(*sql.Rows) error) error {
	n := len(w.args)
	st, padded, err := w.mysql.stmt(ctx, w.d.db, tx, k, n)
	if err != nil {
		return err
	}
	rows, err := st.QueryContext(ctx, padArgs(w.args, 1, padded)...)
	w.args = w.args[:n]
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		if err := scan(rows); err != nil {
			return err
		}
	}
	return rows.Err()
}

// readStored, on a rerun after errStoredBefore, loads the stored messages of the
// batch's client ids, under the seq locks, into w.stored.
func (w *mysqlWriter) readStored(ctx context.Context, tx *sql.Tx, batch []*request) error {
	clear(w.stored)
	if !w.rereadStored {
		return nil
	}
	w.args = w.args[:0]
	keys := make(map[msgKey]bool, len(batch))
	for _, r := range batch {
		k := msgKey{r.in.SessionID, r.in.ClientID}
		if r.op == opAppend && !keys[k] {
			keys[k] = true
			w.args = append(w.args, k.session, k.client)
		}
	}
	if len(keys) == 0 {
		return nil
	}
	// Rare, and one of a kind: run unprepared rather than keep a statement per length.
	query := `SELECT ` + messageCols + ` FROM messages WHERE (session_id, client_id) IN (` +
		strings.Repeat("(?, ?), ", len(keys)-1) + `(?, ?))`
	rows, err := tx.QueryContext(ctx, query, w.args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var m chat.Message
		if err := scanMessage(rows, &m); err != nil {
			return err
		}
		w.stored[msgKey{m.SessionID, m.ClientID}] = m
	}
	return rows.Err()
}

// insertRows inserts the queued rows, maxInsertRows per statement. Fewer affected rows
// than rows means a client id was stored before: errStoredBefore on a first run; on a
// rerun, which read every stored id, the insert hit a seq already taken instead.
func (w *mysqlWriter) insertRows(ctx context.Context, tx *sql.Tx) error {
	defer func() {
		clear(w.rows)
		w.rows = w.rows[:0]
	}()
	for rows := w.rows; len(rows) > 0; {
		chunk := rows[:min(len(rows), maxInsertRows)]
		rows = rows[len(chunk):]
		w.args = w.args[:0]
		for _, r := range chunk {
			m := &r.out
			w.args = append(w.args, m.SessionID, m.Seq, m.ClientID, m.From, m.To, m.Room, string(m.Kind),
				m.Text, w.d.timeArg(m.CreatedAt))
		}
		st, padded, err := w.mysql.stmt(ctx, w.d.db, tx, myInsert, len(chunk))
		if err != nil {
			return err
		}
		res, err := st.ExecContext(ctx, padArgs(w.args, 9, padded)...)
		if err != nil {
			return err
		}
		n, err := res.RowsAffected()
		switch {
		case err != nil:
			return err
		case n == int64(len(chunk)):
		case !w.rereadStored:
			return errStoredBefore
		default:
			return chat.Errorf(chat.EInternal, "a seq of session %s was already taken", chunk[0].out.SessionID)
		}
	}
	return nil
}

// saveSeqs writes back, in one upsert, the last seq of each session the batch
// changed; a session left empty (deleted, or refused everything) loses its row.
func (w *mysqlWriter) saveSeqs(ctx context.Context, tx *sql.Tx, st mysqlFixedStmts) error {
	w.args = w.args[:0]
	for _, s := range w.sessions {
		switch last := w.seqs[s]; {
		case last == 0:
			if _, err := st.seqDelete.ExecContext(ctx, s); err != nil {
				return err
			}
		case last != w.loaded[s]:
			w.args = append(w.args, s, last)
		}
	}
	if len(w.args) == 0 {
		return nil
	}
	return w.execPadded(ctx, tx, mySeqSave, 2)
}

// deleteSession deletes the session's messages; later appends start again at seq 1.
func (w *mysqlWriter) deleteSession(ctx context.Context, st mysqlFixedStmts, r *request) error {
	s := r.in.SessionID
	var err error
	if r.deleted, err = execCount(ctx, st.delete, s); err != nil {
		return err
	}
	w.seqs[s] = 0
	for k := range w.seen {
		if k.session == s {
			delete(w.seen, k)
		}
	}
	return nil
}
