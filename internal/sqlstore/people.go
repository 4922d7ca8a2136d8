package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"time"

	"parley/internal/chat"
)

var _ chat.PeopleStore = (*DB)(nil)

// SetTimeZone implements chat.PeopleStore with one upsert.
func (d *DB) SetTimeZone(ctx context.Context, email, zone string) error {
	query := `INSERT INTO people (email, time_zone, updated_at) VALUES (?, ?, ?)
		ON CONFLICT (email) DO UPDATE SET time_zone = excluded.time_zone, updated_at = excluded.updated_at`
	if d.dialect == dialectMySQL {
		query = `INSERT INTO people (email, time_zone, updated_at) VALUES (?, ?, ?)
		ON DUPLICATE KEY UPDATE time_zone = VALUES(time_zone), updated_at = VALUES(updated_at)`
	}
	_, err := d.db.ExecContext(ctx, query, email, zone, d.timeArg(time.Now()))
	return dbErr(err, "store time zone")
}

// TimeZone implements chat.PeopleStore.
func (d *DB) TimeZone(ctx context.Context, email string) (string, error) {
	var zone string
	err := d.db.QueryRowContext(ctx, `SELECT time_zone FROM people WHERE email = ?`, email).Scan(&zone)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	return zone, dbErr(err, "read time zone")
}
