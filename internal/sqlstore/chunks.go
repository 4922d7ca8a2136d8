package sqlstore

import (
	"context"
	"database/sql"

	"parley/internal/chat"
)

// Merged messages on SQLite. A merge (pending.go) moves a chat's pending messages
// into message_chunks as runs of at most chunkMax consecutive messages, one row per
// run, encoded as a chunk (appendChunk, pending_codec.go). SQLite through database/sql
// costs several microseconds per inserted row however small, so a row per message
// made the merge most of the cost of storing a message; a row per run costs that once
// for up to chunkMax messages. Rows are appended (rowid order) and found through the
// index on (session_id, last_seq): a read takes the rows whose run ends after the
// seq it starts from, in order, and decodes them.
const chunkMax = 256

// The chunk statements.
const (
	sqliteChunksAfter = `SELECT data FROM message_chunks WHERE session_id = ? AND last_seq > ? ORDER BY last_seq`
	sqliteChunkLast   = `SELECT COALESCE(MAX(last_seq), 0) FROM message_chunks WHERE session_id = ?`
	sqliteChunkAdd    = `INSERT INTO message_chunks (session_id, first_seq, last_seq, data) VALUES (?, ?, ?, ?)`
	sqliteChunkCount  = `SELECT COALESCE(SUM(last_seq - first_seq + 1), 0) FROM message_chunks WHERE session_id = ?`
	sqliteChunkDelete = `DELETE FROM message_chunks WHERE session_id = ?`
)

// readChunks decodes the chat's stored messages with seq > after, in order, calling
// fn with each until fn returns false. query is sqliteChunksAfter (prepared, or
// bound to a transaction).
func readChunks(ctx context.Context, query *sql.Stmt, session string, after int64, fn func(*chat.Message) bool) error {
	rows, err := query.QueryContext(ctx, session, after)
	if err != nil {
		return err
	}
	defer rows.Close()
	var blob []byte
	for rows.Next() {
		if err := rows.Scan(&blob); err != nil {
			return err
		}
		msgs, err := decodeChunk(blob)
		if err != nil {
			return err
		}
		for i := range msgs {
			if msgs[i].Seq > after && !fn(&msgs[i]) {
				return nil
			}
		}
	}
	return rows.Err()
}

// storedChunks reads up to limit of the chat's stored messages after seq after.
func (d *DB) storedChunks(ctx context.Context, session string, after int64, limit int) ([]chat.Message, error) {
	st, err := d.prepared(ctx, sqliteChunksAfter)
	if err != nil {
		return nil, err
	}
	out := make([]chat.Message, 0, min(limit, 8))
	err = readChunks(ctx, st, session, after, func(m *chat.Message) bool {
		out = append(out, *m)
		return len(out) < limit
	})
	return out, err
}

// addChunks stores msgs, consecutive messages of one chat, as runs of at most chunkMax.
func (w *sqliteWriter) addChunks(ctx context.Context, add *sql.Stmt, msgs []*chat.Message) error {
	for len(msgs) > 0 {
		run := msgs[:min(len(msgs), chunkMax)]
		w.blob = w.chunks.appendChunk(w.blob[:0], run)
		if _, err := add.ExecContext(ctx, run[0].SessionID, run[0].Seq, run[len(run)-1].Seq, w.blob); err != nil {
			return err
		}
		msgs = msgs[len(run):]
	}
	return nil
}

// convertMessages moves the rows of messages (left by a Parley before message_chunks)
// into message_chunks, in one transaction at open.
func (w *sqliteWriter) convertMessages(ctx context.Context) error {
	var any int
	if err := w.conn.QueryRowContext(ctx, `SELECT COUNT(*) FROM (SELECT 1 FROM messages LIMIT 1)`).Scan(&any); err != nil || any == 0 {
		return err
	}
	tx, err := w.begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	var sessions []string
	rows, err := w.conn.QueryContext(ctx, `SELECT DISTINCT session_id FROM messages ORDER BY session_id`)
	if err != nil {
		return err
	}
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			rows.Close()
			return err
		}
		sessions = append(sessions, s)
	}
	if err := rows.Close(); err != nil {
		return err
	}
	add := w.prepared.addChunk
	n := 0
	for _, s := range sessions {
		var msgs []*chat.Message
		rows, err := w.conn.QueryContext(ctx, `SELECT `+messageCols+` FROM messages WHERE session_id = ? ORDER BY seq`, s)
		if err != nil {
			return err
		}
		for rows.Next() {
			m := new(chat.Message)
			if err := scanMessage(rows, m); err != nil {
				rows.Close()
				return err
			}
			msgs = append(msgs, m)
		}
		if err := rows.Close(); err != nil {
			return err
		}
		if err := w.addChunks(ctx, add, msgs); err != nil {
			return err
		}
		n += len(msgs)
	}
	if _, err := w.conn.ExecContext(ctx, `DELETE FROM messages`); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return err
	}
	w.d.log.Info("converted stored messages to message runs", "messages", n, "chats", len(sessions))
	return nil
}
