package sqlstore

import (
	"context"
	"database/sql"
	"embed"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strconv"
	"strings"
	"time"

	"parley/internal/chat"
)

// migrationFiles holds the schema, one folder per dialect, one numbered file per step
// (0001_init.sql, 0002_…): applied in order, each exactly once, recorded in
// schema_migrations. A small runner rather than a migration framework: the schema is
// two tables, migrations only go forward, and the code stays readable in one sitting.
//
//go:embed migrations/sqlite/*.sql migrations/mysql/*.sql
var migrationFiles embed.FS

// migration is one numbered schema step.
type migration struct {
	version int
	name    string
	sql     string
}

// migrateLockName is the MySQL named lock that lets only one `parley migrate` run at once.
const migrateLockName = "parley_schema_migrate"

// migrations returns the dialect's steps in version order.
func (d *DB) migrations() ([]migration, error) {
	dir := "migrations/" + d.dialect.String()
	entries, err := fs.ReadDir(migrationFiles, dir)
	if err != nil {
		return nil, err
	}
	var ms []migration
	for _, e := range entries {
		num, _, ok := strings.Cut(e.Name(), "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || !strings.HasSuffix(e.Name(), ".sql") {
			return nil, fmt.Errorf("migration file %s: want NNNN_name.sql", e.Name())
		}
		body, err := migrationFiles.ReadFile(path.Join(dir, e.Name()))
		if err != nil {
			return nil, err
		}
		ms = append(ms, migration{version: v, name: e.Name(), sql: string(body)})
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].version < ms[j].version })
	return ms, nil
}

// SchemaVersion returns the version the database is at and the latest version this
// build knows. current < latest means `parley migrate` must run.
func (d *DB) SchemaVersion(ctx context.Context) (current, latest int, err error) {
	ms, err := d.migrations()
	if err != nil {
		return 0, 0, chat.Wrap(chat.EInternal, err, "read embedded migrations")
	}
	if len(ms) > 0 {
		latest = ms[len(ms)-1].version
	}
	current, err = currentVersion(ctx, d.db)
	return current, latest, err
}

// queryer is what currentVersion needs of a *sql.DB or *sql.Conn.
type queryer interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

// currentVersion reads the highest applied version; 0 when none or no table yet.
func currentVersion(ctx context.Context, q queryer) (int, error) {
	var v sql.NullInt64
	err := q.QueryRowContext(ctx, `SELECT MAX(version) FROM schema_migrations`).Scan(&v)
	if err != nil {
		if isMissingTable(err) {
			return 0, nil
		}
		return 0, dbErr(err, "read schema version")
	}
	return int(v.Int64), nil
}

// isMissingTable reports whether err says schema_migrations does not exist yet.
func isMissingTable(err error) bool {
	s := err.Error()
	return strings.Contains(s, "no such table") || strings.Contains(s, "Error 1146")
}

// checkSchema refuses to run on a database behind this build's schema.
func (d *DB) checkSchema(ctx context.Context) error {
	current, latest, err := d.SchemaVersion(ctx)
	if err != nil {
		return err
	}
	if current < latest {
		return chat.Errorf(chat.EUnavailable,
			"the database schema is at version %d but this Parley needs version %d: run `parley migrate` first", current, latest)
	}
	if current > latest {
		d.log.Warn("database schema is newer than this build; running anyway", "schema", current, "build", latest)
	}
	return nil
}

// Migrate applies every migration not yet recorded, in order. Running it again is
// harmless. On SQLite each step runs in one transaction; MySQL commits DDL statement by
// statement, so there a failed step must be repaired by hand before it is run again.
func (d *DB) Migrate(ctx context.Context) error {
	ms, err := d.migrations()
	if err != nil {
		return chat.Wrap(chat.EInternal, err, "read embedded migrations")
	}
	conn, err := d.db.Conn(ctx)
	if err != nil {
		return dbErr(err, "connect for migration")
	}
	defer conn.Close()
	if d.dialect == dialectMySQL {
		unlock, err := lockMySQL(ctx, conn)
		if err != nil {
			return err
		}
		defer unlock()
	}
	if _, err := conn.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version INTEGER NOT NULL PRIMARY KEY, name VARCHAR(255) NOT NULL, applied_at BIGINT NOT NULL)`); err != nil {
		return dbErr(err, "create schema_migrations")
	}
	current, err := currentVersion(ctx, conn)
	if err != nil {
		return err
	}
	for _, m := range ms {
		if m.version <= current {
			continue
		}
		if err := d.apply(ctx, conn, m); err != nil {
			return err
		}
		d.log.Info("applied migration", "version", m.version, "name", m.name)
	}
	return nil
}

// lockMySQL takes the migration lock on conn, waiting up to a minute.
func lockMySQL(ctx context.Context, conn *sql.Conn) (unlock func(), err error) {
	var got sql.NullInt64
	if err := conn.QueryRowContext(ctx, `SELECT GET_LOCK(?, 60)`, migrateLockName).Scan(&got); err != nil {
		return nil, dbErr(err, "take migration lock")
	}
	if got.Int64 != 1 {
		return nil, chat.Errorf(chat.EUnavailable, "another migration is running; try again")
	}
	return func() {
		_, _ = conn.ExecContext(context.Background(), `SELECT RELEASE_LOCK(?)`, migrateLockName)
	}, nil
}

// apply runs one migration's statements and records it.
func (d *DB) apply(ctx context.Context, conn *sql.Conn, m migration) error {
	tx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		return dbErr(err, "begin migration %s", m.name)
	}
	defer tx.Rollback()
	for _, stmt := range splitStatements(m.sql) {
		if _, err := tx.ExecContext(ctx, stmt); err != nil {
			return chat.Wrap(chat.EInternal, err, "migration %s", m.name)
		}
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)`,
		m.version, m.name, time.Now().Unix()); err != nil {
		return dbErr(err, "record migration %s", m.name)
	}
	return dbErr(tx.Commit(), "commit migration %s", m.name)
}

// splitStatements cuts a migration file at semicolons that end a line; the files
// contain no semicolons inside statements. Comment-only pieces are dropped.
func splitStatements(s string) []string {
	var out []string
	for _, part := range strings.Split(s, ";\n") {
		if hasSQL(part) {
			out = append(out, strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(part), ";")))
		}
	}
	return out
}

// hasSQL reports whether a piece holds more than comments and blank lines.
func hasSQL(part string) bool {
	for _, line := range strings.Split(part, "\n") {
		line = strings.TrimSpace(line)
		if line != "" && !strings.HasPrefix(line, "--") {
			return true
		}
	}
	return false
}
