package sqlstore

import (
	"context"
	"database/sql"
	"errors"

	"parley/internal/chat"
)

var _ chat.Receipts = (*DB)(nil)

// advanceCursor raises a person's cursors, never lowering them: the upsert keeps the
// larger of the stored and the new value per column, so concurrent calls from several
// replicas cannot move a cursor back. Read raises received in the same statement.
var advanceCursor = map[dialect]string{
	dialectSQLite: `INSERT INTO receipts (session_id, email, received, read_seq) VALUES (?, ?, ?, ?)
		ON CONFLICT (session_id, email) DO UPDATE SET
			received = max(receipts.received, excluded.received),
			read_seq = max(receipts.read_seq, excluded.read_seq)`,
	dialectMySQL: `INSERT INTO receipts (session_id, email, received, read_seq) VALUES (?, ?, ?, ?)
		ON DUPLICATE KEY UPDATE received = GREATEST(received, VALUES(received)),
			read_seq = GREATEST(read_seq, VALUES(read_seq))`,
}

// AdvanceCursor implements chat.Receipts.
func (d *DB) AdvanceCursor(ctx context.Context, sessionID, email string, c chat.Cursor) (chat.Cursor, error) {
	c, _ = chat.Cursor{}.Advance(c) // read implies received
	if _, err := d.db.ExecContext(ctx, advanceCursor[d.dialect], sessionID, email, c.Received, c.Read); err != nil {
		return chat.Cursor{}, dbErr(err, "advance cursor")
	}
	var out chat.Cursor
	err := d.queryRow(ctx, `SELECT received, read_seq FROM receipts WHERE session_id = ? AND email = ?`,
		sessionID, email).Scan(&out.Received, &out.Read)
	return out, dbErr(err, "read cursor")
}

// Cursors implements chat.Receipts.
func (d *DB) Cursors(ctx context.Context, sessionID string) (map[string]chat.Cursor, error) {
	rows, err := d.db.QueryContext(ctx, `SELECT email, received, read_seq FROM receipts WHERE session_id = ?`, sessionID)
	if err != nil {
		return nil, dbErr(err, "read cursors")
	}
	defer rows.Close()
	out := make(map[string]chat.Cursor, 2)
	for rows.Next() {
		var email string
		var c chat.Cursor
		if err := rows.Scan(&email, &c.Received, &c.Read); err != nil {
			return nil, dbErr(err, "read cursors")
		}
		out[email] = c
	}
	return out, dbErr(rows.Err(), "read cursors")
}

// InProgress implements chat.SessionStore.
func (d *DB) InProgress(ctx context.Context, room string) (*chat.Session, error) {
	s, err := d.inProgress(ctx, room)
	if err != nil {
		return nil, err
	}
	if s == nil {
		return nil, chat.Errorf(chat.ENotFound, "There is no chat in progress in room %q.", room)
	}
	return s, nil
}

// LatestSession implements chat.SessionStore.
func (d *DB) LatestSession(ctx context.Context, room, email string) (*chat.Session, error) {
	s, err := scanSession(d.queryRow(ctx, `SELECT `+sessionCols+` FROM sessions
		WHERE room = ? AND (host_email = ? OR participant_email = ?)
		ORDER BY initiated_at DESC, id DESC LIMIT 1`, room, email, email))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, chat.Errorf(chat.ENotFound, "You have no chat in room %q.", room)
	}
	return s, dbErr(err, "read latest session")
}
