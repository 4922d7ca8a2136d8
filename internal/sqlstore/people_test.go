package sqlstore

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"

	"parley/internal/chat"
	"parley/internal/testenv"
)

func TestSQLitePeople(t *testing.T) { testPeople(t, openTestSQLite(t)) }

func TestMySQLPeople(t *testing.T) { testPeople(t, openTestMySQL(t)) }

// testPeople: a zone is stored per person, the latest wins, and an unknown person
// has none.
func testPeople(t *testing.T, db *DB) {
	ctx := context.Background()
	ann := "ann-" + chat.NewSessionID()[:8] + "@example.org"
	if z, err := db.TimeZone(ctx, ann); err != nil || z != "" {
		t.Fatalf("unknown person: zone %q, %v", z, err)
	}
	for _, zone := range []string{"Europe/Berlin", "America/Argentina/Buenos_Aires"} {
		if err := db.SetTimeZone(ctx, ann, zone); err != nil {
			t.Fatal(err)
		}
		if z, err := db.TimeZone(ctx, ann); err != nil || z != zone {
			t.Fatalf("zone %q (%v), want %q", z, err, zone)
		}
	}
	if z, _ := db.TimeZone(ctx, "other-"+ann); z != "" {
		t.Fatalf("another person got zone %q", z)
	}
}

func TestSQLiteRoomsLowercaseUpgrade(t *testing.T) {
	path := filepath.Join(t.TempDir(), "parley.db")
	old, err := sql.Open("sqlite", path+"?"+sqlitePragmas)
	if err != nil {
		t.Fatal(err)
	}
	testRoomsLowercaseUpgrade(t, newDB(old, dialectSQLite, nil), func() *DB {
		old.Close()
		return openAgain(t, path)
	})
}

func TestMySQLRoomsLowercaseUpgrade(t *testing.T) {
	cfg, err := mysql.ParseDSN(testenv.MySQLDSN(t))
	if err != nil {
		t.Fatal(err)
	}
	var b [6]byte
	_, _ = rand.Read(b[:])
	name := "parley_test_" + hex.EncodeToString(b[:])
	cfg.DBName = ""
	admin, err := openMySQL(context.Background(), cfg.FormatDSN(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := admin.db.Exec("CREATE DATABASE " + name); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_, _ = admin.db.Exec("DROP DATABASE " + name)
		admin.db.Close()
	})
	cfg.DBName = name
	dsn := cfg.FormatDSN()
	old, err := openMySQL(context.Background(), dsn, nil)
	if err != nil {
		t.Fatal(err)
	}
	testRoomsLowercaseUpgrade(t, old, func() *DB {
		old.db.Close()
		if err := MigrateMySQL(context.Background(), dsn, nil); err != nil {
			t.Fatal(err)
		}
		db, err := OpenMySQL(context.Background(), dsn, testLogger(t))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = db.Close() })
		return db
	})
}

// testRoomsLowercaseUpgrade builds a database as a Parley with case-sensitive rooms
// left it, with two chats in progress in "DEMO2" and "demo2" and an ended one in
// "Old-Room", then upgrades it (reopen) and checks that rooms are one lower-case name
// each, the older chat in progress keeps the room, the newer is ended for export, and
// messages follow their room.
func testRoomsLowercaseUpgrade(t *testing.T, old *DB, reopen func() *DB) {
	ctx := context.Background()
	ms, err := old.migrations()
	if err != nil {
		t.Fatal(err)
	}
	before := slices.IndexFunc(ms, func(m migration) bool { return strings.Contains(m.name, "rooms_lowercase") })
	conn := applyFirst(t, old, before)
	start := time.Date(2026, 11, 1, 10, 0, 0, 0, time.UTC)
	older, newer, ended := chat.NewSessionID(), chat.NewSessionID(), chat.NewSessionID()
	for _, s := range []struct {
		id, room, status string
		at               time.Time
	}{
		{older, "DEMO2", "inprogress", start},
		{newer, "demo2", "inprogress", start.Add(time.Minute)},
		{ended, "Old-Room", "completed", start.Add(-time.Hour)},
	} {
		if _, err := conn.ExecContext(ctx, `INSERT INTO sessions (id, room, host_email, status, initiated_at) VALUES (?, ?, 'a@x.org', ?, ?)`,
			s.id, s.room, s.status, old.timeArg(s.at)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := conn.ExecContext(ctx, `INSERT INTO messages (`+messageCols+`) VALUES (?, 1, 'c1', 'a@x.org', '', 'DEMO2', 'chat', 'hi', ?)`,
		older, old.timeArg(start)); err != nil {
		t.Fatal(err)
	}
	conn.Close()

	db := reopen()
	for id, want := range map[string]struct {
		room   string
		status chat.Status
	}{older: {"demo2", chat.StatusInProgress}, newer: {"demo2", chat.StatusEnding}, ended: {"old-room", chat.StatusCompleted}} {
		s, err := db.Session(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if s.Room != want.room || s.Status != want.status {
			t.Errorf("session in room %q status %s, want %q %s", s.Room, s.Status, want.room, want.status)
		}
		if want.status == chat.StatusEnding && s.EndedAt.IsZero() {
			t.Errorf("the newer chat was ended without an end time")
		}
	}
	if s, err := db.InProgress(ctx, "demo2"); err != nil || s.ID != older {
		t.Fatalf("chat in progress in demo2: %v %v, want the older one", s, err)
	}
	msgs, err := db.Messages(ctx, older, 0, 10)
	if err != nil || len(msgs) != 1 || msgs[0].Room != "demo2" {
		t.Fatalf("messages %+v (%v), want one in room demo2", msgs, err)
	}
}
