// Package sqlstore keeps chat sessions and messages in a SQL database through
// database/sql, in two dialects: SQLite (modernc.org/sqlite, pure Go: the embedded
// default, one file owned by one process) and MySQL/MariaDB (production, shared by
// many replicas). Every race the domain cares about — two chats in one room, two
// participants, two ends — is settled by the database (unique indexes and conditional
// updates), never by locks in this process, so it holds across replicas.
//
// Appends: on MySQL they go through one writer goroutine that commits whatever
// arrived meanwhile in one transaction (group commit): a commit costs one round of
// locks and a log flush however many messages it carries. On SQLite the appending
// goroutine writes its message to the message log itself (msglog.go) and merges move
// the messages into SQLite beside the appends (pending.go), so no SQLite transaction
// and no hand-off to another goroutine stands between a message and its ack.
package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/go-sql-driver/mysql"
	"modernc.org/sqlite"

	"parley/internal/chat"
)

// DB is a SessionStore and a MessageStore on one SQL database.
type DB struct {
	db      *sql.DB
	dialect dialect
	log     *slog.Logger
	w       *writer
	ckpt    *checkpointer // SQLite only
	sw      *sqliteWriter // SQLite only: w's dialect, which appends on the caller's goroutine
	path    string        // SQLite only: the database file
	pending *pendingSet   // SQLite only: messages not yet in message_chunks (pending.go)
	unlock  func()        // SQLite only: releases the file's lock (lockFile)
	stmts   sync.Map      // query text → *sql.Stmt, prepared once (see prepared)

	closeOnce sync.Once
	closeErr  error
}

var (
	_ chat.SessionStore = (*DB)(nil)
	_ chat.MessageStore = (*DB)(nil)
)

// dialect names the SQL flavour; the few statements that differ switch on it.
type dialect uint8

const (
	dialectSQLite dialect = iota + 1
	dialectMySQL
)

func (d dialect) String() string {
	if d == dialectMySQL {
		return "mysql"
	}
	return "sqlite"
}

// sqlitePragmas are applied by the driver to every pooled connection: WAL lets readers
// run beside the writer, busy_timeout makes writers wait for each other instead of
// failing, synchronous(NORMAL) is durable across process crashes in WAL mode (a power
// cut may lose the last commits), foreign keys are off because none are declared.
// _txlock=immediate takes the write lock at BEGIN, so a transaction that reads then
// writes waits for the lock instead of failing with SQLITE_BUSY halfway.
// wal_autocheckpoint is raised because checkpoints run on a timer (checkpoint.go).
// temp_store(MEMORY) keeps any statement journal and sorter out of temporary files, and
// a 16 MiB page cache holds the pages a merge (pending.go) revisits; SQLite grows it
// only as pages are used.
const sqlitePragmas = "_pragma=temp_store(MEMORY)&_pragma=cache_size(-16384)&_pragma=journal_mode(WAL)&_pragma=busy_timeout(10000)&_pragma=synchronous(NORMAL)" +
	"&_pragma=wal_autocheckpoint(" + sqliteAutoCheckpoint + ")&_txlock=immediate"

// sqliteMaxConns bounds the SQLite pool: readers share it with the writer; more
// connections than this only add contention on one file.
const sqliteMaxConns = 8

// OpenSQLite opens (creating if needed) the SQLite database file at path and brings
// its schema up to date: the embedded database belongs to this process alone, so there
// is no operator step to forget.
func OpenSQLite(ctx context.Context, path string, logger *slog.Logger) (*DB, error) {
	// Each pooled connection would get its own empty database from ":memory:".
	if path == "" || strings.ContainsAny(path, "?#") || strings.Contains(path, ":memory:") {
		return nil, chat.Errorf(chat.EInvalid, "SQLite path %q must name a file and contain no '?' or '#'", path)
	}
	unlock, err := lockFile(path)
	if err != nil {
		return nil, err
	}
	sqldb, err := sql.Open("sqlite", path+"?"+sqlitePragmas)
	if err != nil {
		unlock()
		return nil, chat.Wrap(chat.EUnavailable, err, "open SQLite %s", path)
	}
	sqldb.SetMaxOpenConns(sqliteMaxConns)
	sqldb.SetMaxIdleConns(sqliteMaxConns)
	d := newDB(sqldb, dialectSQLite, logger)
	d.pending, d.unlock, d.path = newPendingSet(), unlock, path
	if err := d.Migrate(ctx); err != nil {
		_ = sqldb.Close()
		unlock()
		return nil, err
	}
	if err := d.start(ctx); err != nil {
		_ = sqldb.Close()
		unlock()
		return nil, err
	}
	d.ckpt = startCheckpointer(d)
	return d, nil
}

// OpenMySQL connects to MySQL/MariaDB. It does not change the schema, since several
// replicas start at once and schema changes are an operator's decision: it checks the
// schema version and asks for `parley migrate` when the database is behind. The DSN is
// a go-sql-driver DSN; parseTime=true and loc=UTC are forced, since every time is
// stored and compared in UTC, and clientFoundRows=false, since conditional updates and
// the message writer read "0 rows affected" as "nothing changed".
func OpenMySQL(ctx context.Context, dsn string, logger *slog.Logger) (*DB, error) {
	d, err := openMySQL(ctx, dsn, logger)
	if err != nil {
		return nil, err
	}
	if err := d.checkSchema(ctx); err != nil {
		_ = d.db.Close()
		return nil, err
	}
	if err := d.start(ctx); err != nil {
		_ = d.db.Close()
		return nil, err
	}
	return d, nil
}

// MigrateMySQL brings the MySQL/MariaDB schema up to date (what `parley migrate` runs).
// Several replicas running it at once is harmless: a named lock serialises them.
func MigrateMySQL(ctx context.Context, dsn string, logger *slog.Logger) error {
	d, err := openMySQL(ctx, dsn, logger)
	if err != nil {
		return err
	}
	defer d.db.Close()
	return d.Migrate(ctx)
}

// openMySQL opens the pool and checks the server answers, without the writer.
func openMySQL(ctx context.Context, dsn string, logger *slog.Logger) (*DB, error) {
	cfg, err := mysql.ParseDSN(dsn)
	if err != nil {
		// The parse error may quote the DSN, password included: keep it out.
		return nil, chat.Errorf(chat.EInvalid, "the MySQL DSN is not valid (see go-sql-driver/mysql DSN format)")
	}
	cfg.ParseTime = true
	cfg.Loc = time.UTC
	cfg.ClientFoundRows = false
	connector, err := mysql.NewConnector(cfg)
	if err != nil {
		return nil, chat.Wrap(chat.EInvalid, err, "MySQL connector")
	}
	sqldb := sql.OpenDB(connector)
	sqldb.SetMaxOpenConns(32)
	sqldb.SetMaxIdleConns(32)
	sqldb.SetConnMaxLifetime(5 * time.Minute)
	if err := sqldb.PingContext(ctx); err != nil {
		_ = sqldb.Close()
		return nil, chat.Wrap(chat.EUnavailable, err, "connect to MySQL at %s", cfg.Addr)
	}
	return newDB(sqldb, dialectMySQL, logger), nil
}

func newDB(sqldb *sql.DB, d dialect, logger *slog.Logger) *DB {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &DB{db: sqldb, dialect: d, log: logger.With("component", "sqlstore", "dialect", d.String())}
}

// start launches the group-commit writer.
func (d *DB) start(ctx context.Context) error {
	w, err := newWriter(ctx, d)
	if err != nil {
		return err
	}
	d.w = w
	go w.run()
	return nil
}

// Ping reports whether the database answers.
func (d *DB) Ping(ctx context.Context) error {
	if err := d.db.PingContext(ctx); err != nil {
		return chat.Wrap(chat.EUnavailable, err, "database unreachable")
	}
	return nil
}

// Close stops the writer once the appends already queued are committed and answered,
// then closes the database. Appends after Close fail with EUnavailable. Calling Close
// again returns the first result.
func (d *DB) Close() error {
	d.closeOnce.Do(func() {
		if d.w != nil {
			d.w.stop()
		}
		if d.ckpt != nil {
			d.ckpt.close()
		}
		d.stmts.Range(func(_, st any) bool {
			_ = st.(*sql.Stmt).Close()
			return true
		})
		d.closeErr = d.db.Close()
		if d.unlock != nil {
			d.unlock()
		}
	})
	return d.closeErr
}

// prepared returns query prepared on the pool, preparing it on first use. A query with
// arguments run through DB.QueryContext is compiled again on every call (modernc's
// SQLite prepares and finalizes it each time; go-sql-driver without interpolateParams
// makes two extra round trips); a *sql.Stmt keeps one compiled copy per pooled
// connection. Only the reads run per connection or per message use it: the set of
// queries is fixed, so the cache stays small.
func (d *DB) prepared(ctx context.Context, query string) (*sql.Stmt, error) {
	if st, ok := d.stmts.Load(query); ok {
		return st.(*sql.Stmt), nil
	}
	st, err := d.db.PrepareContext(ctx, query)
	if err != nil {
		return nil, err
	}
	if prev, loaded := d.stmts.LoadOrStore(query, st); loaded {
		_ = st.Close()
		return prev.(*sql.Stmt), nil
	}
	return st, nil
}

// queryRow is QueryRowContext on the prepared query; a failed prepare shows as the
// row's error.
func (d *DB) queryRow(ctx context.Context, query string, args ...any) rowScanner {
	st, err := d.prepared(ctx, query)
	if err != nil {
		return errRow{err}
	}
	return st.QueryRowContext(ctx, args...)
}

// errRow is a row whose Scan fails with err.
type errRow struct{ err error }

// Scan implements rowScanner.
func (r errRow) Scan(...any) error { return r.err }

// isUniqueViolation reports whether err is a unique or primary key violation.
func isUniqueViolation(err error) bool {
	var me *mysql.MySQLError
	if errors.As(err, &me) {
		return me.Number == 1062
	}
	var se *sqlite.Error
	if errors.As(err, &se) {
		// SQLITE_CONSTRAINT_UNIQUE, SQLITE_CONSTRAINT_PRIMARYKEY
		return se.Code() == 2067 || se.Code() == 1555
	}
	return false
}

// isRetryable reports whether a MySQL transaction failed only because it lost a lock
// race (deadlock, lock wait timeout) and may simply be run again.
func isRetryable(err error) bool {
	var me *mysql.MySQLError
	return errors.As(err, &me) && (me.Number == 1213 || me.Number == 1205)
}

// dbErr turns a database failure into a domain error: callers see EUnavailable (try
// again later); the cause stays attached for the logs.
func dbErr(err error, format string, args ...any) error {
	if err == nil {
		return nil
	}
	var ce *chat.Error
	if errors.As(err, &ce) {
		return err
	}
	return chat.Wrap(chat.EUnavailable, err, format, args...)
}

// timeArg converts t for a query: NULL when zero, unix microseconds on SQLite, a UTC
// time.Time truncated to the microsecond on MySQL (DATETIME(6)).
func (d *DB) timeArg(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	if d.dialect == dialectSQLite {
		return t.UnixMicro()
	}
	return t.UTC().Truncate(time.Microsecond)
}

// timeCol scans a time column of either dialect into *t: NULL gives the zero time.
type timeCol struct{ t *time.Time }

// Scan implements sql.Scanner.
func (c timeCol) Scan(v any) error {
	switch v := v.(type) {
	case nil:
		*c.t = time.Time{}
	case int64:
		*c.t = time.UnixMicro(v).UTC()
	case time.Time:
		*c.t = v.UTC()
	default:
		return fmt.Errorf("sqlstore: cannot scan %T into a time", v)
	}
	return nil
}
