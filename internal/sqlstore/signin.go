package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"time"

	"parley/internal/chat"
)

var _ chat.SignInStore = (*DB)(nil)

// signInGrace is how long an expired sign-in row is kept before CreateSignIn deletes
// it; the rows are useless once expired, the grace only keeps deletes batched.
const signInGrace = time.Hour

// errSignInGone is the one answer for an unknown, used or expired link, so the
// answer does not tell which.
var errSignInGone = chat.Errorf(chat.ENotFound, "This sign-in link has expired or was already used. Join again to get a new one.")

// CreateSignIn implements chat.SignInStore. Rows that expired over an hour ago are
// deleted on the way, so the table holds only recent links without a cleanup job.
func (d *DB) CreateSignIn(ctx context.Context, tokenHash, email, room string, expires time.Time) error {
	if _, err := d.db.ExecContext(ctx, `DELETE FROM signins WHERE expires_at < ?`,
		d.timeArg(time.Now().Add(-signInGrace))); err != nil {
		return dbErr(err, "delete expired sign-ins")
	}
	_, err := d.db.ExecContext(ctx, `INSERT INTO signins (token_hash, email, room, expires_at) VALUES (?, ?, ?, ?)`,
		tokenHash, email, room, d.timeArg(expires))
	return dbErr(err, "store sign-in")
}

// ConsumeSignIn implements chat.SignInStore: it reads the row, then deletes it; only
// the caller whose DELETE removed the row wins, so a link works once even when two
// requests (or replicas) use it at the same moment.
func (d *DB) ConsumeSignIn(ctx context.Context, tokenHash string, now time.Time) (string, string, error) {
	var email, room string
	var expires time.Time
	err := d.db.QueryRowContext(ctx, `SELECT email, room, expires_at FROM signins WHERE token_hash = ?`, tokenHash).
		Scan(&email, &room, timeCol{&expires})
	if errors.Is(err, sql.ErrNoRows) {
		return "", "", errSignInGone
	}
	if err != nil {
		return "", "", dbErr(err, "read sign-in")
	}
	res, err := d.db.ExecContext(ctx, `DELETE FROM signins WHERE token_hash = ?`, tokenHash)
	if err != nil {
		return "", "", dbErr(err, "use sign-in")
	}
	if n, err := res.RowsAffected(); err != nil || n != 1 {
		return "", "", errSignInGone // another request used it first
	}
	if !now.Before(expires) {
		return "", "", errSignInGone
	}
	return email, room, nil
}
