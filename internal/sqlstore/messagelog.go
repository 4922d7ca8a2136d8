package sqlstore

import (
	"context"
	"database/sql"
	"hash/fnv"
	"strings"
	"time"

	"parley/internal/chat"
)

// The SQLite message log. A group commit in WAL mode writes every page it changed, and
// messages is clustered by (session_id, seq): a batch carrying one message each of a
// hundred chats changed a hundred pages, each written whole (4 KiB) to the WAL for a
// ~200-byte row. So the writer appends new messages to message_log instead, and moves
// them into messages in bulk.
//
// The log is split into logParts parts by a hash of the session id, each keyed by an
// increasing id, so a batch appends at the ends of at most logParts parts (a few pages
// however many chats it carries). A move takes one whole part — every logged message
// of about 1/logParts of the chats — sorted by session, so each chat's page is written
// once for all the rows it gathered since that part was last moved: with many chats
// at once, a part still holds many rows per chat, where moving the oldest rows of the
// whole log would hold one or two.
//
// Appends wait while a move runs, so the writer moves a part once it holds as many
// rows as the last move's speed says fit in about mergePause (at least mergeMin), and
// moves everything once it has been idle for mergeIdle. parley bench
// (docs/BENCHMARKS.md) set mergePause: with parts, a part holds many rows per chat
// even when moved often, so short moves cost little more CPU and keep p99 down (R=100:
// 4 ms gave p99 12.5-14.1 ms, 12 ms 18.9-21.1 ms, for the same throughput; R=1000
// stayed at p99 134-148 ms).
//
// A chat's logged messages are all in one part and a move takes them all, in one
// transaction, so a row is in exactly one table at any moment and every read is one
// statement over both tables (the log's part found by its key prefix).
//
// The move is INSERT OR FAIL: with the default ABORT, SQLite keeps a statement journal
// (a copy of every page the statement changes, so it can undo just that statement);
// FAIL needs none, and a failed move rolls back its whole transaction anyway.
const (
	logParts   = 16
	mergeFirst = 256
	mergeMin   = 64
	mergeMax   = 32768
	mergePause = 4 * time.Millisecond
	mergeIdle  = 250 * time.Millisecond
)

// SQLite reads over both tables. Numbered parameters are reused: each takes its value
// once; the last one is always the session's log part (logPart).
const (
	sqliteMessagesAfter = `SELECT * FROM (SELECT ` + messageCols + ` FROM messages WHERE session_id = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3)
		UNION ALL SELECT ` + messageCols + ` FROM message_log WHERE part = ?4 AND session_id = ?1 AND seq > ?2
		ORDER BY seq LIMIT ?3`
	sqliteLastSeqOf = `SELECT MAX(COALESCE((SELECT MAX(seq) FROM messages WHERE session_id = ?1), 0),
		COALESCE((SELECT MAX(seq) FROM message_log WHERE part = ?2 AND session_id = ?1), 0))`
	sqliteBySeq = `SELECT ` + messageCols + ` FROM messages WHERE session_id = ?1 AND seq = ?2
		UNION ALL SELECT ` + messageCols + ` FROM message_log WHERE part = ?3 AND session_id = ?1 AND seq = ?2`
	sqliteByClient = `SELECT ` + messageCols + ` FROM messages WHERE session_id = ?1 AND client_id = ?2
		UNION ALL SELECT ` + messageCols + ` FROM message_log WHERE part = ?3 AND session_id = ?1 AND client_id = ?2`
	sqliteClientIDs = `SELECT seq, client_id FROM messages WHERE session_id = ?1
		UNION ALL SELECT seq, client_id FROM message_log WHERE part = ?2 AND session_id = ?1`
	sqliteInsert    = `INSERT INTO message_log (part, id, ` + messageCols + `) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`
	sqliteDeleteLog = `DELETE FROM message_log WHERE part = ? AND session_id = ?`
	sqliteLogParts  = `SELECT part, COUNT(*), MAX(id) FROM message_log GROUP BY part`
	sqliteMoveLog   = `INSERT OR FAIL INTO messages (` + messageCols + `) SELECT ` + messageCols + ` FROM message_log WHERE part = ? ORDER BY session_id, seq`
	sqliteTrimLog   = `DELETE FROM message_log WHERE part = ?`
)

// logInsertRows is how many messages one INSERT into the log carries: database/sql
// and the driver cost about as much per statement as SQLite does per row, so a batch
// is written logInsertRows rows per statement (sqliteInsertN), the rest one by one.
const logInsertRows = 32

// sqliteInsertN inserts logInsertRows rows.
var sqliteInsertN = sqliteInsert + strings.Repeat(", (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", logInsertRows-1)

// queueRow adds r's message to the rows the batch will insert into the log.
func (w *sqliteWriter) queueRow(ctx context.Context, st sqliteStmts, r *request) error {
	w.rows = append(w.rows, r)
	if len(w.rows) == logInsertRows {
		return w.flushRows(ctx, st)
	}
	return nil
}

// flushRows inserts the queued rows. Anything that reads message rows in the batch
// (a dedupe check, loading a chat's ids, a delete) flushes first, so it sees them.
func (w *sqliteWriter) flushRows(ctx context.Context, st sqliteStmts) error {
	rows := w.rows
	defer func() {
		clear(w.rows)
		w.rows = w.rows[:0]
		clear(w.args)
	}()
	for len(rows) >= logInsertRows {
		w.args = w.args[:0]
		for _, r := range rows[:logInsertRows] {
			w.args = w.appendRowArgs(w.args, &r.out)
		}
		if _, err := st.insertN.ExecContext(ctx, w.args...); err != nil {
			return err
		}
		rows = rows[logInsertRows:]
	}
	for _, r := range rows {
		w.args = w.appendRowArgs(w.args[:0], &r.out)
		if _, err := st.insert.ExecContext(ctx, w.args...); err != nil {
			return err
		}
	}
	return nil
}

// appendRowArgs appends the log row of m, with the next log id, to args.
func (w *sqliteWriter) appendRowArgs(args []any, m *chat.Message) []any {
	id := w.log.nextID
	w.log.nextID++
	return append(args, logPart(m.SessionID), id, m.SessionID, m.Seq, m.ClientID, m.From, m.To, m.Room,
		string(m.Kind), m.Text, w.d.timeArg(m.CreatedAt))
}

// logPart is the log part of a session: stable across processes and restarts, since
// the rows on disk carry it.
func logPart(session string) int64 {
	h := fnv.New32a()
	_, _ = h.Write([]byte(session))
	return int64(h.Sum32() % logParts)
}

// messageLog is the SQLite writer's account of the log.
type messageLog struct {
	rows    [logParts]int64 // rows waiting in each part
	total   int64
	nextID  int64 // id of the next appended row
	mergeAt int64 // rows of a part that start a move
	fixed   bool  // tests: keep mergeAt as set
}

// load reads the log's parts (at start: a crash may leave rows behind).
func (l *messageLog) load(ctx context.Context, st *sql.Stmt) error {
	rows, err := st.QueryContext(ctx)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var part, n, maxID int64
		if err := rows.Scan(&part, &n, &maxID); err != nil {
			return err
		}
		if part >= 0 && part < logParts {
			l.rows[part], l.total = n, l.total+n
		}
		l.nextID = max(l.nextID, maxID+1)
	}
	return rows.Err()
}

// appended counts a row appended to part (its id is taken when it is written).
func (l *messageLog) appended(part int64) {
	l.rows[part]++
	l.total++
}

// removed counts n rows of part deleted or moved.
func (l *messageLog) removed(part, n int64) {
	n = min(n, l.rows[part])
	l.rows[part] -= n
	l.total -= n
}

// fullest returns the part with the most rows.
func (l *messageLog) fullest() int64 {
	var best int64
	for p := range int64(logParts) {
		if l.rows[p] > l.rows[best] {
			best = p
		}
	}
	return best
}

// resize sets mergeAt from the last move (moved rows in took), aiming at mergePause.
func (l *messageLog) resize(moved int64, took time.Duration) {
	if l.fixed || moved == 0 {
		return
	}
	want := int64(mergePause) * moved / max(1, int64(took))
	l.mergeAt = min(max((l.mergeAt+want)/2, mergeMin), mergeMax)
}

// mergeIfDue moves the fullest part into messages once it holds mergeAt rows, or
// (idle) every part that holds any.
func (w *sqliteWriter) mergeIfDue(idle bool) {
	l := &w.log
	for l.total > 0 {
		part := l.fullest()
		if !idle && l.rows[part] < l.mergeAt {
			return
		}
		start := time.Now()
		moved, err := w.merge(part)
		took := time.Since(start)
		w.loop.metrics.Load().StoreMerged(took)
		if err != nil {
			// The rows stay in the log, where every read still finds them; the next
			// move tries again.
			w.d.log.Warn("moving the message log into messages failed; will retry", "err", err)
			return
		}
		l.resize(moved, took)
		if !idle || w.loop.waiting() {
			return // one move under load; appends waiting come first
		}
	}
}

// merge moves every row of one log part into messages, in one transaction, and
// returns how many it moved.
func (w *sqliteWriter) merge(part int64) (int64, error) {
	ctx := context.Background()
	tx, err := w.begin(ctx)
	if err != nil {
		return 0, err
	}
	defer tx.Rollback()
	if _, err := tx.StmtContext(ctx, w.prepared.moveLog).ExecContext(ctx, part); err != nil {
		return 0, err
	}
	n, err := execCount(ctx, tx.StmtContext(ctx, w.prepared.trimLog), part)
	if err != nil {
		return 0, err
	}
	if err := tx.Commit(); err != nil {
		return 0, err
	}
	w.log.removed(part, w.log.rows[part]) // all of it, whatever a failed batch left counted
	w.merges.Add(1)
	return n, nil
}
