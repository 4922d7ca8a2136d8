package sqlstore

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"parley/internal/chat"
	"parley/internal/testenv"
)

// countRows returns the rows of table that belong to session.
func countRows(t *testing.T, db *DB, table, session string) int {
	t.Helper()
	var n int
	if err := db.db.QueryRow(`SELECT COUNT(*) FROM `+table+` WHERE session_id = ?`, session).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestMessageLogMerge keeps a chat's messages split between the log and messages (a
// part is moved once it holds 5 rows) and checks that every read sees them as one sequence: pages
// that cross the two tables, the last seq, a resend of a merged message, a delete, and
// a restart with rows still in the log.
func TestMessageLogMerge(t *testing.T) {
	ctx := context.Background()
	db, path := openToReopen(t)
	sqliteW(db).log.mergeAt, sqliteW(db).log.fixed = 5, true
	a, b := chat.NewSessionID(), chat.NewSessionID()
	for i := 1; i <= 23; i++ {
		for _, s := range []string{a, b} {
			if _, _, err := db.Append(ctx, testMessage(s, fmt.Sprintf("c-%d", i))); err != nil {
				t.Fatal(err)
			}
		}
	}
	na := 23
	for countRows(t, db, "message_log", a) == 0 { // leave some of a's in the log
		na++
		if _, _, err := db.Append(ctx, testMessage(a, fmt.Sprintf("c-%d", na))); err != nil {
			t.Fatal(err)
		}
	}
	if sqliteW(db).merges.Load() == 0 || countRows(t, db, "messages", a) == 0 || countRows(t, db, "message_log", a) == 0 {
		t.Fatalf("want a's messages in both tables; merges %d, messages %d, log %d",
			sqliteW(db).merges.Load(), countRows(t, db, "messages", a), countRows(t, db, "message_log", a))
	}
	checkContiguous(t, db, a, na)
	for after := int64(0); after < int64(na); after += 4 {
		page, err := db.Messages(ctx, a, after, 4)
		if err != nil {
			t.Fatal(err)
		}
		for i, m := range page {
			if m.Seq != after+int64(i)+1 || m.ClientID != fmt.Sprintf("c-%d", m.Seq) || m.SessionID != a {
				t.Fatalf("page after %d: message %d is seq %d id %s", after, i, m.Seq, m.ClientID)
			}
		}
		if want := min(4, na-int(after)); len(page) != want {
			t.Fatalf("page after %d holds %d messages, want %d", after, len(page), want)
		}
	}
	if last, err := db.LastSeq(ctx, a); err != nil || last != int64(na) {
		t.Fatalf("LastSeq = %d, %v; want %d", last, err, na)
	}
	if m, dup, err := db.Append(ctx, testMessage(a, "c-2")); err != nil || !dup || m.Seq != 2 {
		t.Fatalf("resend of a merged message = seq %d dup %v err %v, want seq 2 dup", m.Seq, dup, err)
	}

	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db = openAgain(t, path)
	checkContiguous(t, db, b, 23)
	if m, dup, err := db.Append(ctx, testMessage(b, "c-23")); err != nil || !dup || m.Seq != 23 {
		t.Fatalf("resend after restart = seq %d dup %v err %v, want seq 23 dup", m.Seq, dup, err)
	}
	n, err := db.DeleteSession(ctx, b)
	if err != nil || n != 23 {
		t.Fatalf("DeleteSession = %d, %v; want 23", n, err)
	}
	if got := countRows(t, db, "messages", b) + countRows(t, db, "message_log", b); got != 0 {
		t.Fatalf("%d rows of a deleted session remain", got)
	}
	checkContiguous(t, db, a, na)
}

// TestMessageLogDrainsWhenIdle checks a quiet writer moves what is left in the log
// into messages, so the log stays short for the reads that scan it.
func TestMessageLogDrainsWhenIdle(t *testing.T) {
	ctx := context.Background()
	db := openTestSQLite(t)
	s := chat.NewSessionID()
	for i := 1; i <= 3; i++ {
		if _, _, err := db.Append(ctx, testMessage(s, fmt.Sprintf("c-%d", i))); err != nil {
			t.Fatal(err)
		}
	}
	testenv.Eventually(t, 10*time.Second, func() bool { return countRows(t, db, "message_log", s) == 0 }, "the idle writer to drain message_log")
	if got := countRows(t, db, "messages", s); got != 3 {
		t.Fatalf("messages holds %d rows after the idle merge, want 3", got)
	}
	checkContiguous(t, db, s, 3)
}

// TestUpgradeKeepsMessages opens a database left by a Parley before the message log
// (schema version 2: messages with a unique client-id index, no message_log) and
// checks that its messages are all still read, in order, that a resend of an old id
// is still a duplicate, and that appending continues after them.
func TestUpgradeKeepsMessages(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "parley.db")
	old, err := sql.Open("sqlite", path+"?"+sqlitePragmas)
	if err != nil {
		t.Fatal(err)
	}
	d := newDB(old, dialectSQLite, nil)
	ms, err := d.migrations()
	if err != nil {
		t.Fatal(err)
	}
	conn, err := old.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.ExecContext(ctx, `CREATE TABLE schema_migrations (
		version INTEGER NOT NULL PRIMARY KEY, name VARCHAR(255) NOT NULL, applied_at BIGINT NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	for _, m := range ms[:2] {
		if err := d.apply(ctx, conn, m); err != nil {
			t.Fatal(err)
		}
	}
	session := chat.NewSessionID()
	for seq := 1; seq <= 30; seq++ {
		if _, err := conn.ExecContext(ctx, `INSERT INTO messages (`+messageCols+`) VALUES (?, ?, ?, 'a@x.org', 'b@x.org', 'r', 'chat', 'old', 1)`,
			session, seq, fmt.Sprintf("old-%d", seq)); err != nil {
			t.Fatal(err)
		}
	}
	conn.Close()
	old.Close()

	db := openAgain(t, path)
	checkContiguous(t, db, session, 30)
	if m, dup, err := db.Append(ctx, testMessage(session, "old-17")); err != nil || !dup || m.Seq != 17 {
		t.Fatalf("resend of a message stored before the upgrade = seq %d dup %v err %v, want seq 17 dup", m.Seq, dup, err)
	}
	if m, dup, err := db.Append(ctx, testMessage(session, "new-1")); err != nil || dup || m.Seq != 31 {
		t.Fatalf("first message after the upgrade = seq %d dup %v err %v, want seq 31", m.Seq, dup, err)
	}
}
