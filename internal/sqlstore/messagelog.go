package sqlstore

import (
	"context"
	"database/sql"
	"time"
)

// The SQLite message log. A group commit in WAL mode writes every page it changed, and
// messages is clustered by (session_id, seq): a batch carrying one message each of a
// hundred chats changed a hundred pages, each written whole (4 KiB) to the WAL for a
// ~200-byte row. So the writer appends new messages to message_log, a rowid table
// whose inserts all land on its last page, and moves the oldest rows into messages in
// one transaction once enough of them have gathered (sorted by session, so each
// chat's rows fill its pages together), or when the writer has been idle for mergeIdle.
//
// Appends wait while a merge runs, so its size is a trade: more rows per merge means
// more rows per chat per page written, but a longer pause. The writer sizes each merge
// from the last one's speed: big enough to take mergePause, and bigger, up to
// mergePauseMax, when that would still leave fewer than mergeRowsPerChat rows for each
// chat that wrote since the last merge (many chats at once: each chat's page is then
// written for a handful of rows instead of one). parley bench (docs/BENCHMARKS.md) set
// the numbers: at R=100 a 5 ms pause gave ~80,000 deliveries/s with p99 15-19 ms and
// 12 ms ~90,000-99,000/s with p99 18 ms; at R=1000 a 50 ms cap gave p99 ~200 ms,
// 25 ms ~170 ms, for about the same throughput.
//
// The move is INSERT OR FAIL: with the default ABORT, SQLite keeps a statement journal
// (a copy of every page the statement changes, so it can undo just that statement);
// FAIL needs none, and a failed move rolls back its whole transaction anyway.
//
// A row is in exactly one table at any moment (a move is one transaction), and the
// move takes the oldest rows first, so every read is one statement over both tables
// and sees a consistent snapshot. The log stays small, so reads scan it without an
// index.
const (
	mergeFirst       = 2048
	mergeMin         = 512
	mergeMax         = 32768
	mergePause       = 12 * time.Millisecond
	mergePauseMax    = 25 * time.Millisecond
	mergeRowsPerChat = 16
	mergeIdle        = 250 * time.Millisecond
)

// SQLite reads over both tables. ?1, ?2, ?3 are reused, so each takes its value once.
const (
	sqliteMessagesAfter = `SELECT * FROM (SELECT ` + messageCols + ` FROM messages WHERE session_id = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3)
		UNION ALL SELECT ` + messageCols + ` FROM message_log WHERE session_id = ?1 AND seq > ?2
		ORDER BY seq LIMIT ?3`
	sqliteLastSeqOf = `SELECT MAX(COALESCE((SELECT MAX(seq) FROM messages WHERE session_id = ?1), 0),
		COALESCE((SELECT MAX(seq) FROM message_log WHERE session_id = ?1), 0))`
	sqliteBySeq = `SELECT ` + messageCols + ` FROM messages WHERE session_id = ?1 AND seq = ?2
		UNION ALL SELECT ` + messageCols + ` FROM message_log WHERE session_id = ?1 AND seq = ?2`
	sqliteByClient = `SELECT ` + messageCols + ` FROM messages WHERE session_id = ?1 AND client_id = ?2
		UNION ALL SELECT ` + messageCols + ` FROM message_log WHERE session_id = ?1 AND client_id = ?2`
	sqliteClientIDs = `SELECT seq, client_id FROM messages WHERE session_id = ?1
		UNION ALL SELECT seq, client_id FROM message_log WHERE session_id = ?1`
	sqliteInsert    = `INSERT INTO message_log (` + messageCols + `) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`
	sqliteDeleteLog = `DELETE FROM message_log WHERE session_id = ?`
	sqliteLogCount  = `SELECT COUNT(*) FROM message_log`
	sqliteLogFirst  = `SELECT MIN(id) FROM message_log`
	sqliteMoveLog   = `INSERT OR FAIL INTO messages (` + messageCols + `) SELECT ` + messageCols + ` FROM message_log WHERE id <= ? ORDER BY session_id, seq`
	sqliteTrimLog   = `DELETE FROM message_log WHERE id <= ?`
)

// loadLogSize reads how many rows wait in the log (at start: a crash may leave some).
func (w *writer) loadLogSize(ctx context.Context) error {
	if w.d.dialect != dialectSQLite {
		return nil
	}
	return w.prepared.logCount.QueryRowContext(ctx).Scan(&w.logRows)
}

// mergeIfDue moves log rows into messages when mergeAt have gathered, or (idle) when
// any have, and sizes the next merge from this one's speed.
func (w *writer) mergeIfDue(idle bool) {
	if w.d.dialect != dialectSQLite || w.logRows == 0 || (!idle && w.logRows < w.mergeAt) {
		return
	}
	for w.logRows > 0 {
		start := time.Now()
		moved, err := w.merge()
		took := time.Since(start)
		w.metrics.Load().StoreMerged(took)
		if moved > 0 && !w.fixedMerge {
			w.sizeMerges(moved, took)
		}
		if err != nil {
			// The rows stay in the log, where every read still finds them; the next
			// merge tries again.
			w.d.log.Warn("moving the message log into messages failed; will retry", "err", err)
			return
		}
		if !idle || len(w.wake) > 0 {
			return // one step under load; appends waiting come first
		}
	}
}

// sizeMerges sets mergeAt from the last merge (moved rows in took); see above.
func (w *writer) sizeMerges(moved int64, took time.Duration) {
	perRow := max(1, int64(took)/moved)
	want := min(max(mergeRowsPerChat*int64(len(w.logChats)), int64(mergePause)/perRow), int64(mergePauseMax)/perRow)
	w.mergeAt = min(max((w.mergeAt+want)/2, mergeMin), mergeMax)
	clear(w.logChats)
}

// merge moves the oldest mergeAt rows (by id) of the log into messages, in one
// transaction, and returns how many it moved.
func (w *writer) merge() (int64, error) {
	ctx := context.Background()
	tx, err := w.begin(ctx)
	if err != nil {
		return 0, err
	}
	defer tx.Rollback()
	var first sql.NullInt64
	if err := tx.StmtContext(ctx, w.prepared.logFirst).QueryRowContext(ctx).Scan(&first); err != nil {
		return 0, err
	}
	if !first.Valid {
		w.logRows = 0
		return 0, nil
	}
	upTo := first.Int64 + w.mergeAt - 1
	if _, err := tx.StmtContext(ctx, w.prepared.moveLog).ExecContext(ctx, upTo); err != nil {
		return 0, err
	}
	res, err := tx.StmtContext(ctx, w.prepared.trimLog).ExecContext(ctx, upTo)
	if err != nil {
		return 0, err
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, err
	}
	if err := tx.Commit(); err != nil {
		return 0, err
	}
	w.logRows = max(0, w.logRows-n)
	w.merges.Add(1)
	return n, nil
}
