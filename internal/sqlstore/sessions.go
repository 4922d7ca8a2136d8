package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"time"

	"parley/internal/chat"
)

// sessionCols lists the sessions columns in the order scanSession reads them.
const sessionCols = `id, room, host_email, participant_email, status, initiated_at, ended_at, ended_by,
	completed_at, chat_history, archive_key, archive_size, archive_sha256, message_count,
	host_mailed_at, participant_mailed_at, host_mail_error, participant_mail_error, purged_at`

// The session reads every WebSocket connection makes, prepared once (DB.prepared).
const (
	sessionByID       = `SELECT ` + sessionCols + ` FROM sessions WHERE id = ?`
	sessionInProgress = `SELECT ` + sessionCols + ` FROM sessions WHERE room = ? AND status = 'inprogress'`
)

// maxEnterAttempts bounds Enter's read-then-write loop; each lost race means another
// request changed the room, so a few rounds always settle it.
const maxEnterAttempts = 8

// rowScanner is a *sql.Row or *sql.Rows.
type rowScanner interface{ Scan(dest ...any) error }

func scanSession(r rowScanner) (*chat.Session, error) {
	var s chat.Session
	var status string
	err := r.Scan(&s.ID, &s.Room, &s.HostEmail, &s.ParticipantEmail, &status,
		timeCol{&s.InitiatedAt}, timeCol{&s.EndedAt}, &s.EndedBy, timeCol{&s.CompletedAt},
		&s.ChatHistory, &s.Archive.Key, &s.Archive.Size, &s.Archive.SHA256, &s.MessageCount,
		timeCol{&s.HostMailedAt}, timeCol{&s.ParticipantMailedAt}, &s.HostMailError,
		&s.ParticipantMailError, timeCol{&s.PurgedAt})
	s.Status = chat.Status(status)
	return &s, err
}

// Enter implements chat.SessionStore. It reads the room's chat in progress and then
// makes one conditional write: insert a new session (the unique index on in-progress
// rooms refuses a second one) or claim the free participant seat (an UPDATE whose
// WHERE requires an empty participant). A write that loses a race changes nothing, and the loop
// reads again to see who won.
func (d *DB) Enter(ctx context.Context, room, email string, now time.Time) (*chat.Session, chat.Role, error) {
	for range maxEnterAttempts {
		s, err := d.inProgress(ctx, room)
		if err != nil {
			return nil, chat.RoleNone, err
		}
		if s == nil {
			s, err = d.create(ctx, room, email, now)
			if err != nil {
				return nil, chat.RoleNone, err
			}
			if s != nil {
				return s, chat.RoleHost, nil
			}
			continue // another request started the room's chat first
		}
		if role := s.RoleOf(email); role != chat.RoleNone {
			return s, role, nil
		}
		if s.ParticipantEmail != "" {
			return nil, chat.RoleNone, chat.Errorf(chat.ERoomFull, "The chat in room %q already has two people.", room)
		}
		won, err := d.claim(ctx, s.ID, email)
		if err != nil {
			return nil, chat.RoleNone, err
		}
		if won {
			s.ParticipantEmail = email
			return s, chat.RoleParticipant, nil
		}
	}
	return nil, chat.RoleNone, chat.Errorf(chat.EConflict, "The room is busy; please try again.")
}

// inProgress returns the room's session in progress, or nil.
func (d *DB) inProgress(ctx context.Context, room string) (*chat.Session, error) {
	s, err := scanSession(d.queryRow(ctx, sessionInProgress, room))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	return s, dbErr(err, "read room")
}

// create inserts a new session with email as host; nil, nil when another request
// started the room's chat first.
func (d *DB) create(ctx context.Context, room, email string, now time.Time) (*chat.Session, error) {
	s := &chat.Session{ID: chat.NewSessionID(), Room: room, HostEmail: email,
		Status: chat.StatusInProgress, InitiatedAt: now.UTC().Truncate(time.Microsecond)}
	_, err := d.db.ExecContext(ctx, `INSERT INTO sessions (id, room, host_email, status, initiated_at) VALUES (?, ?, ?, ?, ?)`,
		s.ID, s.Room, s.HostEmail, string(s.Status), d.timeArg(s.InitiatedAt))
	if isUniqueViolation(err) {
		return nil, nil
	}
	if err != nil {
		return nil, dbErr(err, "start session")
	}
	return s, nil
}

// claim takes the free participant seat of an in-progress session for email and
// reports whether this call won it.
func (d *DB) claim(ctx context.Context, id, email string) (bool, error) {
	res, err := d.db.ExecContext(ctx, `UPDATE sessions SET participant_email = ?
		WHERE id = ? AND participant_email = '' AND status = 'inprogress'`, email, id)
	return affectedOne(res, err, "claim participant seat")
}

// affectedOne reports whether an update changed exactly one row.
func affectedOne(res sql.Result, err error, what string) (bool, error) {
	if err != nil {
		return false, dbErr(err, "%s", what)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, dbErr(err, "%s", what)
	}
	return n == 1, nil
}

// Session implements chat.SessionStore.
func (d *DB) Session(ctx context.Context, id string) (*chat.Session, error) {
	s, err := scanSession(d.queryRow(ctx, sessionByID, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, chat.Errorf(chat.ENotFound, "There is no such chat.")
	}
	return s, dbErr(err, "read session")
}

// SessionsByEmail implements chat.SessionStore; the two email indexes serve the OR.
func (d *DB) SessionsByEmail(ctx context.Context, email string, limit int) ([]*chat.Session, error) {
	return d.list(ctx, `SELECT `+sessionCols+` FROM sessions WHERE host_email = ? OR participant_email = ?
		ORDER BY initiated_at DESC, id DESC LIMIT ?`, email, email, limit)
}

// SessionsEnding implements chat.SessionStore.
func (d *DB) SessionsEnding(ctx context.Context, limit int) ([]*chat.Session, error) {
	return d.list(ctx, `SELECT `+sessionCols+` FROM sessions WHERE status = 'ending'
		ORDER BY ended_at, id LIMIT ?`, limit)
}

// SessionsToPurge implements chat.SessionStore: only sessions whose archive is recorded.
func (d *DB) SessionsToPurge(ctx context.Context, limit int) ([]*chat.Session, error) {
	return d.list(ctx, `SELECT `+sessionCols+` FROM sessions
		WHERE status = 'completed' AND purged_at IS NULL AND archive_key <> ''
		ORDER BY completed_at, id LIMIT ?`, limit)
}

// list runs a sessions query.
func (d *DB) list(ctx context.Context, query string, args ...any) ([]*chat.Session, error) {
	rows, err := d.db.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, dbErr(err, "list sessions")
	}
	defer rows.Close()
	var out []*chat.Session
	for rows.Next() {
		s, err := scanSession(rows)
		if err != nil {
			return nil, dbErr(err, "read sessions")
		}
		out = append(out, s)
	}
	return out, dbErr(rows.Err(), "read sessions")
}

// endSession moves a chat in progress to ending; the one caller it changes wins.
const endSession = `UPDATE sessions SET status = 'ending', ended_at = ?, ended_by = ? WHERE id = ? AND status = 'inprogress'`

// End implements chat.SessionStore: the conditional update admits one winner.
// On SQLite the update goes through the message writer, in its next batch: the
// writer remembers which chats are still in progress, and so must see every end.
func (d *DB) End(ctx context.Context, id, by string, at time.Time) (bool, error) {
	var won bool
	var err error
	if d.dialect == dialectSQLite && d.w != nil {
		won, err = d.w.end(ctx, id, by, at)
	} else {
		res, execErr := d.db.ExecContext(ctx, endSession, d.timeArg(at), by, id)
		won, err = affectedOne(res, execErr, "end session")
	}
	if err != nil || won {
		return won, err
	}
	return false, d.mustExist(ctx, id)
}

// mustExist returns ENotFound unless the session exists. Updates that changed no row
// call it: the row is missing, or (MySQL counts changed rows only) already so.
func (d *DB) mustExist(ctx context.Context, id string) error {
	_, err := d.Session(ctx, id)
	return err
}

// RecordArchive implements chat.SessionStore.
func (d *DB) RecordArchive(ctx context.Context, id string, obj chat.ArchiveObject, messages int64) error {
	res, err := d.db.ExecContext(ctx, `UPDATE sessions SET archive_key = ?, archive_size = ?, archive_sha256 = ?,
		message_count = ? WHERE id = ?`, obj.Key, obj.Size, obj.SHA256, messages, id)
	return d.updatedOrExists(ctx, res, err, id, "record archive")
}

// updatedOrExists accepts an unconditional update that changed a row or found the
// row already holding those values.
func (d *DB) updatedOrExists(ctx context.Context, res sql.Result, err error, id, what string) error {
	won, err := affectedOne(res, err, what)
	if err != nil || won {
		return err
	}
	return d.mustExist(ctx, id)
}

// RecordMail implements chat.SessionStore.
func (d *DB) RecordMail(ctx context.Context, id string, role chat.Role, mailedAt time.Time, failure string) error {
	var query string
	switch role {
	case chat.RoleHost:
		query = `UPDATE sessions SET host_mailed_at = ?, host_mail_error = ? WHERE id = ?`
	case chat.RoleParticipant:
		query = `UPDATE sessions SET participant_mailed_at = ?, participant_mail_error = ? WHERE id = ?`
	default:
		return chat.Errorf(chat.EInvalid, "RecordMail: unknown role %q", role)
	}
	res, err := d.db.ExecContext(ctx, query, d.timeArg(mailedAt), failure, id)
	return d.updatedOrExists(ctx, res, err, id, "record mail")
}

// Complete implements chat.SessionStore: only an ending session moves to completed.
func (d *DB) Complete(ctx context.Context, id, link string, at time.Time) error {
	res, err := d.db.ExecContext(ctx, `UPDATE sessions SET status = 'completed', chat_history = ?, completed_at = ?
		WHERE id = ? AND status = 'ending'`, link, d.timeArg(at), id)
	won, err := affectedOne(res, err, "complete session")
	if err != nil || won {
		return err
	}
	s, err := d.Session(ctx, id)
	if err != nil {
		return err
	}
	if s.Status != chat.StatusCompleted {
		return chat.Errorf(chat.EConflict, "session %s is %s, not ending", id, s.Status)
	}
	return nil
}

// MarkPurged implements chat.SessionStore; the first purge time is kept.
func (d *DB) MarkPurged(ctx context.Context, id string, at time.Time) error {
	res, err := d.db.ExecContext(ctx, `UPDATE sessions SET purged_at = ? WHERE id = ? AND purged_at IS NULL`,
		d.timeArg(at), id)
	return d.updatedOrExists(ctx, res, err, id, "mark purged")
}
