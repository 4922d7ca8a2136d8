package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"time"

	"parley/internal/chat"
)

var _ chat.LoginStore = (*DB)(nil)

// errLoginGone is the answer for an unknown, revoked or expired sign-in alike.
var errLoginGone = chat.Errorf(chat.ENotFound, "Not signed in.")

// loginGrace is how long an expired sign-in row is kept before CreateLogin deletes it;
// the grace only keeps those deletes batched.
const loginGrace = time.Hour

// CreateLogin implements chat.LoginStore. Rows that expired over an hour ago are
// deleted on the way (by the caller's clock, l.CreatedAt), so the table holds only
// live sign-ins without a cleanup job.
func (d *DB) CreateLogin(ctx context.Context, tokenHash string, l chat.Login) error {
	if _, err := d.db.ExecContext(ctx, `DELETE FROM logins WHERE expires_at < ?`,
		d.timeArg(l.CreatedAt.Add(-loginGrace))); err != nil {
		return dbErr(err, "delete expired sign-ins")
	}
	_, err := d.db.ExecContext(ctx,
		`INSERT INTO logins (token_hash, email, verified, created_at, expires_at) VALUES (?, ?, ?, ?, ?)`,
		tokenHash, l.Email, l.Verified, d.timeArg(l.CreatedAt), d.timeArg(l.ExpiresAt))
	return dbErr(err, "store sign-in")
}

// Login implements chat.LoginStore with one primary-key read (prepared once: it runs
// on every page and WebSocket upgrade whose sign-in is not cached).
func (d *DB) Login(ctx context.Context, tokenHash string, now time.Time) (chat.Login, error) {
	var l chat.Login
	err := d.queryRow(ctx, `SELECT email, verified, created_at, expires_at FROM logins WHERE token_hash = ?`, tokenHash).
		Scan(&l.Email, &l.Verified, timeCol{&l.CreatedAt}, timeCol{&l.ExpiresAt})
	if errors.Is(err, sql.ErrNoRows) {
		return chat.Login{}, errLoginGone
	}
	if err != nil {
		return chat.Login{}, dbErr(err, "read sign-in")
	}
	if !now.Before(l.ExpiresAt) {
		return chat.Login{}, errLoginGone
	}
	return l, nil
}

// RevokeLogin implements chat.LoginStore: the row is deleted.
func (d *DB) RevokeLogin(ctx context.Context, tokenHash string) error {
	_, err := d.db.ExecContext(ctx, `DELETE FROM logins WHERE token_hash = ?`, tokenHash)
	return dbErr(err, "revoke sign-in")
}

// RevokeLogins implements chat.LoginStore: every row of email is deleted.
func (d *DB) RevokeLogins(ctx context.Context, email string) (int64, error) {
	res, err := d.db.ExecContext(ctx, `DELETE FROM logins WHERE email = ?`, email)
	if err != nil {
		return 0, dbErr(err, "revoke sign-ins")
	}
	n, err := res.RowsAffected()
	return n, dbErr(err, "revoke sign-ins")
}
