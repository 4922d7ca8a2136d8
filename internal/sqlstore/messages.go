package sqlstore

import (
	"context"
	"time"

	"parley/internal/chat"
)

// messageCols lists the messages columns in the order scanMessage reads them.
const messageCols = `session_id, seq, client_id, from_email, to_email, room, kind, text, created_at`

// The message reads every WebSocket connection makes, prepared once (DB.prepared).
const (
	messagesAfter = `SELECT ` + messageCols + ` FROM messages WHERE session_id = ? AND seq > ? ORDER BY seq LIMIT ?`
	lastSeqOf     = `SELECT COALESCE(MAX(seq), 0) FROM messages WHERE session_id = ?`
)

// scanMessage reads one messages row into m.
func scanMessage(r rowScanner, m *chat.Message) error {
	var kind string
	err := r.Scan(&m.SessionID, &m.Seq, &m.ClientID, &m.From, &m.To, &m.Room, &kind, &m.Text, timeCol{&m.CreatedAt})
	m.Kind = chat.Kind(kind)
	return err
}

var _ chat.EndChecked = (*DB)(nil)

// RefusesAfterEnd marks the store as chat.EndChecked: on both dialects the writer reads
// the session's status in the transaction that would store the message, and refuses a
// message to an ended chat with EChatEnded (refuseAfterEnd; ended_test.go).
func (d *DB) RefusesAfterEnd() {}

// Append implements chat.MessageStore. The message joins the writer's next group
// commit; Append returns once that transaction has committed (or failed), so a nil
// error means the message is durable and may be acknowledged. See writer for how seqs
// are assigned on each dialect.
func (d *DB) Append(ctx context.Context, m chat.Message) (chat.Message, bool, error) {
	if m.SessionID == "" || m.ClientID == "" {
		return chat.Message{}, false, chat.Errorf(chat.EInvalid, "a message needs a session id and a client id")
	}
	if m.CreatedAt.IsZero() {
		m.CreatedAt = chat.Now()
	} else {
		m.CreatedAt = m.CreatedAt.UTC().Truncate(time.Microsecond)
	}
	m.Seq = 0
	r := newRequest(opAppend)
	r.in = m
	if d.sw != nil {
		d.sw.appendNow(ctx, r)
	} else if err := d.w.do(ctx, r); err != nil {
		return chat.Message{}, false, err
	}
	out, dup, err := r.out, r.dup, r.err
	r.release()
	if err != nil {
		return chat.Message{}, false, err
	}
	return out, dup, nil
}

// Messages implements chat.MessageStore with a primary-key range read. On SQLite the
// chat's pending messages come from memory first, and message_chunks is read only for
// what is older than them (pending.go, chunks.go).
func (d *DB) Messages(ctx context.Context, sessionID string, after int64, limit int) ([]chat.Message, error) {
	if limit <= 0 {
		return nil, nil
	}
	var pending []chat.Message
	if d.pending != nil {
		var complete bool
		if pending, complete = d.pending.after(sessionID, after, limit); complete {
			return pending, nil
		}
	}
	var stored []chat.Message
	var err error
	if d.pending != nil {
		stored, err = d.storedChunks(ctx, sessionID, after, limit)
		err = dbErr(err, "read messages")
	} else {
		stored, err = d.storedMessages(ctx, sessionID, after, limit)
	}
	if err != nil || len(pending) == 0 {
		return stored, err
	}
	// The stored ones are older, but a merge after the pending ones were copied may
	// have moved some of those into messages too.
	for _, m := range pending {
		if len(stored) == limit {
			break
		}
		if len(stored) == 0 || m.Seq > stored[len(stored)-1].Seq {
			stored = append(stored, m)
		}
	}
	return stored, nil
}

// storedMessages reads up to limit of the session's rows of messages after seq after.
func (d *DB) storedMessages(ctx context.Context, sessionID string, after int64, limit int) ([]chat.Message, error) {
	st, err := d.prepared(ctx, messagesAfter)
	if err != nil {
		return nil, dbErr(err, "read messages")
	}
	rows, err := st.QueryContext(ctx, sessionID, after, limit)
	if err != nil {
		return nil, dbErr(err, "read messages")
	}
	defer rows.Close()
	// Small to start: most reads (a connection's replay of a new or caught-up chat)
	// return few messages or none, and every connection makes one; append grows it.
	out := make([]chat.Message, 0, min(limit, 8))
	for rows.Next() {
		var m chat.Message
		if err := scanMessage(rows, &m); err != nil {
			return nil, dbErr(err, "read messages")
		}
		out = append(out, m)
	}
	return out, dbErr(rows.Err(), "read messages")
}

// LastSeq implements chat.MessageStore: the last key of the session's range (on
// SQLite, the newest pending message when the chat has any).
func (d *DB) LastSeq(ctx context.Context, sessionID string) (int64, error) {
	if d.pending != nil {
		if seq := d.pending.lastSeq(sessionID); seq > 0 {
			return seq, nil
		}
	}
	query := lastSeqOf
	if d.pending != nil {
		query = sqliteChunkLast
	}
	var seq int64
	err := d.queryRow(ctx, query, sessionID).Scan(&seq)
	return seq, dbErr(err, "read last seq")
}

// DeleteSession implements chat.MessageStore. It goes through the writer, like
// Append, so the writer's idea of the session's last seq changes with the rows.
func (d *DB) DeleteSession(ctx context.Context, sessionID string) (int64, error) {
	r := newRequest(opDelete)
	r.in.SessionID = sessionID
	if err := d.w.do(ctx, r); err != nil {
		return 0, err
	}
	n, err := r.deleted, r.err
	r.release()
	return n, err
}
