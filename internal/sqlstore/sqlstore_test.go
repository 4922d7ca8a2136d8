package sqlstore

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/go-sql-driver/mysql"
	"go.uber.org/goleak"

	"parley/internal/chat"
	"parley/internal/chattest"
	"parley/internal/testenv"
)

// openTestSQLite opens a fresh SQLite file in t's temp dir and closes it at cleanup.
func openTestSQLite(t testing.TB) *DB {
	t.Helper()
	db, err := OpenSQLite(context.Background(), filepath.Join(t.TempDir(), "parley.db"), testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := db.Close(); err != nil {
			t.Error(err)
		}
	})
	return db
}

// testLogger shows the store's logs only with -v.
func testLogger(t testing.TB) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	return slog.New(slog.DiscardHandler)
}

func TestSQLiteSessionStore(t *testing.T) {
	chattest.RunSessionStore(t, func(t *testing.T) chat.SessionStore { return openTestSQLite(t) })
	chattest.RunReceipts(t, func(t *testing.T) chat.Receipts { return openTestSQLite(t) })
}

func TestSQLiteMessageStore(t *testing.T) {
	chattest.RunMessageStore(t, func(t *testing.T) chat.MessageStore { return openTestSQLite(t) })
}

func TestSQLiteLoginStore(t *testing.T) {
	chattest.RunLoginStore(t, func(t *testing.T) chat.LoginStore { return openTestSQLite(t) })
}

// mysqlOnce creates one database for the whole test run and drops it at exit.
var mysqlOnce struct {
	sync.Once
	dsn  string
	drop func()
	err  error
}

// testMySQLDSN returns the DSN of a fresh, migrated database parley_test_<random>,
// created once per test run; testenv skips (or fails on CI) without MariaDB.
func testMySQLDSN(t testing.TB) string {
	t.Helper()
	base := testenv.MySQLDSN(t)
	mysqlOnce.Do(func() { mysqlOnce.dsn, mysqlOnce.drop, mysqlOnce.err = createTestDatabase(base) })
	if mysqlOnce.err != nil {
		t.Fatal(mysqlOnce.err)
	}
	return mysqlOnce.dsn
}

// createTestDatabase creates and migrates a database named parley_test_<random>.
func createTestDatabase(base string) (dsn string, drop func(), err error) {
	cfg, err := mysql.ParseDSN(base)
	if err != nil {
		return "", nil, fmt.Errorf("PARLEY_TEST_MYSQL_DSN: %w", err)
	}
	var b [6]byte
	_, _ = rand.Read(b[:])
	name := "parley_test_" + hex.EncodeToString(b[:])
	cfg.DBName = ""
	admin, err := openMySQL(context.Background(), cfg.FormatDSN(), nil)
	if err != nil {
		return "", nil, err
	}
	if _, err := admin.db.Exec("CREATE DATABASE " + name); err != nil {
		admin.db.Close()
		return "", nil, err
	}
	drop = func() {
		_, _ = admin.db.Exec("DROP DATABASE " + name)
		admin.db.Close()
	}
	cfg.DBName = name
	dsn = cfg.FormatDSN()
	if err := MigrateMySQL(context.Background(), dsn, nil); err != nil {
		drop()
		return "", nil, err
	}
	return dsn, drop, nil
}

func TestMain(m *testing.M) {
	code := m.Run()
	if mysqlOnce.drop != nil {
		mysqlOnce.drop()
	}
	if code == 0 {
		if err := goleak.Find(); err != nil { // a writer or checkpointer left running
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// openTestMySQL opens the run's MySQL database and closes it at cleanup.
func openTestMySQL(t testing.TB) *DB {
	t.Helper()
	db, err := OpenMySQL(context.Background(), testMySQLDSN(t), testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := db.Close(); err != nil {
			t.Error(err)
		}
	})
	return db
}

func TestMySQLSessionStore(t *testing.T) {
	testMySQLDSN(t)
	chattest.RunSessionStore(t, func(t *testing.T) chat.SessionStore { return openTestMySQL(t) })
	chattest.RunReceipts(t, func(t *testing.T) chat.Receipts { return openTestMySQL(t) })
}

func TestMySQLMessageStore(t *testing.T) {
	testMySQLDSN(t)
	chattest.RunMessageStore(t, func(t *testing.T) chat.MessageStore { return openTestMySQL(t) })
}

func TestMySQLLoginStore(t *testing.T) {
	testMySQLDSN(t)
	chattest.RunLoginStore(t, func(t *testing.T) chat.LoginStore { return openTestMySQL(t) })
}
