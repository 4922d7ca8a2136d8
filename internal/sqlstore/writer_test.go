package sqlstore

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"parley/internal/chat"
	"parley/internal/testenv"
)

// testMessage returns a message of session with client id id.
func testMessage(session, id string) chat.Message {
	return chat.Message{SessionID: session, ClientID: id, From: "a@example.com", To: "b@example.com",
		Room: "room", Kind: chat.KindChat, Text: "text " + id}
}

// checkContiguous fails t unless the session's stored seqs are exactly 1..n.
func checkContiguous(t *testing.T, db *DB, session string, n int) {
	t.Helper()
	msgs, err := db.Messages(context.Background(), session, 0, n+10)
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) != n {
		t.Fatalf("session has %d messages, want %d", len(msgs), n)
	}
	for i, m := range msgs {
		if m.Seq != int64(i+1) {
			t.Fatalf("message %d has seq %d", i, m.Seq)
		}
	}
}

// TestRestartKeepsAckedMessages closes the store while appends are in flight and
// reopens the file: every append that returned without error is there, in a gap-free
// sequence, and appending continues after the last seq.
func TestRestartKeepsAckedMessages(t *testing.T) {
	ctx := context.Background()
	db, path := openToReopen(t)
	session := chat.NewSessionID()
	var mu sync.Mutex
	acked := map[int64]string{}
	var wg sync.WaitGroup
	for g := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				m, _, err := db.Append(ctx, testMessage(session, fmt.Sprintf("g%d-%d", g, i)))
				if err != nil {
					if !chat.IsCode(err, chat.EUnavailable) {
						t.Errorf("Append during Close: %v", err)
					}
					return
				}
				mu.Lock()
				acked[m.Seq] = m.ClientID
				mu.Unlock()
			}
		}()
	}
	testenv.Eventually(t, 10*time.Second, func() bool { mu.Lock(); defer mu.Unlock(); return len(acked) >= 500 }, "500 acks")
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()

	db = openAgain(t, path)
	msgs, err := db.Messages(ctx, session, 0, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	for seq, id := range acked {
		if seq > int64(len(msgs)) || msgs[seq-1].ClientID != id {
			t.Fatalf("acknowledged message %s (seq %d) lost after restart", id, seq)
		}
	}
	checkContiguous(t, db, session, len(msgs))
	next, _, err := db.Append(ctx, testMessage(session, "after-restart"))
	if err != nil || next.Seq != int64(len(msgs)+1) {
		t.Fatalf("append after restart = seq %d, %v; want %d", next.Seq, err, len(msgs)+1)
	}
}

// openToReopen opens a new SQLite file that the test closes and opens again
// (openAgain); it returns the file's path.
func openToReopen(t *testing.T) (*DB, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "parley.db")
	db, err := OpenSQLite(context.Background(), path, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	return db, path
}

// openAgain reopens a SQLite file and closes it at cleanup.
func openAgain(t *testing.T, path string) *DB {
	t.Helper()
	db, err := OpenSQLite(context.Background(), path, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// TestOpenWithoutAppendsLeavesNoLogFile checks a process that opens the database and
// stores no message (`parley purge`, `parley export` on the embedded file) leaves no
// message log segment behind, however often it runs.
func TestOpenWithoutAppendsLeavesNoLogFile(t *testing.T) {
	db, path := openToReopen(t)
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if err := openAgain(t, path).Close(); err != nil {
			t.Fatal(err)
		}
	}
	entries, err := os.ReadDir(path + "-log")
	if err != nil || len(entries) != 0 {
		t.Fatalf("the message log holds %d files (%v) after four runs that stored nothing", len(entries), err)
	}
}

// TestAppendAfterClose checks a closed store refuses work instead of hanging.
func TestAppendAfterClose(t *testing.T) {
	db, err := OpenSQLite(context.Background(), filepath.Join(t.TempDir(), "p.db"), testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	_, _, err = db.Append(context.Background(), testMessage(chat.NewSessionID(), "x"))
	if !chat.IsCode(err, chat.EUnavailable) {
		t.Fatalf("Append after Close = %v, want EUnavailable", err)
	}
	if err := db.Close(); err != nil {
		t.Fatalf("second Close = %v", err)
	}
}

// TestAppendAfterDeleteRestartsSeq checks the writer's seq cache follows a delete.
func TestAppendAfterDeleteRestartsSeq(t *testing.T) {
	for _, tc := range testStores(t) {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			db := tc.open(t)
			session := chat.NewSessionID()
			for i := range 3 {
				if _, _, err := db.Append(ctx, testMessage(session, fmt.Sprint(i))); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := db.DeleteSession(ctx, session); err != nil {
				t.Fatal(err)
			}
			m, dup, err := db.Append(ctx, testMessage(session, "0"))
			if err != nil || dup || m.Seq != 1 {
				t.Fatalf("append after delete = seq %d dup %v err %v; want seq 1, new", m.Seq, dup, err)
			}
		})
	}
}

// testStores lists the dialects to run a test against: SQLite always, MySQL when set up.
func testStores(t *testing.T) []struct {
	name string
	open func(t testing.TB) *DB
} {
	return []struct {
		name string
		open func(t testing.TB) *DB
	}{{"SQLite", openTestSQLite}, {"MySQL", openTestMySQL}}
}

// TestFailedLogWriteFailsOnlyItsMessageAndLeavesNoGap makes the message log refuse
// writes, as a failing disk would: its file handle swapped for a read-only one, and
// its mapping (where segments are mapped) for a read-only one, so each copy into it
// faults as a page the disk cannot read back would; or, unmapped, each write(2)
// fails. Those appends fail with EUnavailable, nothing acknowledged before is lost,
// and once the log takes writes again the seqs continue without a gap, so the
// writer's cache was reset.
func TestFailedLogWriteFailsOnlyItsMessageAndLeavesNoGap(t *testing.T) {
	for _, mapped := range []bool{true, false} {
		t.Run(map[bool]string{true: "mapped", false: "written"}[mapped], func(t *testing.T) {
			testFailedLogWrite(t, mapped)
		})
	}
}

func testFailedLogWrite(t *testing.T, mapped bool) {
	ctx := context.Background()
	db, path := openToReopen(t)
	w := sqliteW(db)
	if !mapped {
		w.lmu.Lock()
		if w.log.cur.m != nil {
			w.log.cur.m.unmap()
			w.log.cur.m = nil
		}
		w.lmu.Unlock()
	} else if w.log.cur.m == nil {
		t.Skip("segments are not mapped on this platform")
	}
	session := chat.NewSessionID()
	for i := range 5 {
		if _, _, err := db.Append(ctx, testMessage(session, fmt.Sprintf("ok-%d", i))); err != nil {
			t.Fatal(err)
		}
	}
	w.lmu.Lock()
	good, goodMap := w.log.cur.f, w.log.cur.m
	bad, err := os.Open(good.Name())
	if err != nil {
		w.lmu.Unlock()
		t.Fatal(err)
	}
	w.log.cur.f = bad
	if mapped {
		w.log.cur.m = readOnlyMap(t, good)
	}
	w.lmu.Unlock()
	for i := range 3 {
		if _, _, err := db.Append(ctx, testMessage(session, fmt.Sprintf("bad-%d", i))); !chat.IsCode(err, chat.EUnavailable) {
			t.Fatalf("append while the log refuses writes = %v, want EUnavailable", err)
		}
	}
	w.lmu.Lock()
	w.log.cur.f, w.log.cur.m = good, goodMap
	w.lmu.Unlock()
	_ = bad.Close()
	m, dup, err := db.Append(ctx, testMessage(session, "bad-0")) // the client's resend
	if err != nil || dup || m.Seq != 6 {
		t.Fatalf("resend once the log works = seq %d dup %v err %v; want seq 6, new", m.Seq, dup, err)
	}
	checkContiguous(t, db, session, 6)
	crash(t, db)
	db = openAgain(t, path)
	checkContiguous(t, db, session, 6)
}

// TestMigrateIsIdempotent reopens a migrated file and checks the version.
func TestMigrateIsIdempotent(t *testing.T) {
	path := filepath.Join(t.TempDir(), "p.db")
	db, err := OpenSQLite(context.Background(), path, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	db.Close()
	db = openAgain(t, path)
	if err := db.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	current, latest, err := db.SchemaVersion(context.Background())
	if err != nil || current != latest || latest < 1 {
		t.Fatalf("SchemaVersion = %d, %d, %v", current, latest, err)
	}
}

// TestAppendsNeedNoTransaction checks concurrent appends on SQLite each get their
// own seq, gap-free, on the caller's goroutine: no writer transaction carries them
// (they are written to the message log and merged later).
func TestAppendsNeedNoTransaction(t *testing.T) {
	db := openTestSQLite(t)
	session := chat.NewSessionID()
	const goroutines, per = 50, 20
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range per {
				if _, _, err := db.Append(context.Background(), testMessage(session, fmt.Sprintf("g%d-%d", g, i))); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	checkContiguous(t, db, session, goroutines*per)
	if n := db.w.batched.Load(); n != 0 {
		t.Fatalf("%d appends went through the writer's transactions, want none", n)
	}
}

// TestOpenSQLiteRefusesBadPaths checks paths that would not name one shared file.
func TestOpenSQLiteRefusesBadPaths(t *testing.T) {
	for _, path := range []string{"", ":memory:", "file::memory:", "a.db?mode=ro", "a#b"} {
		if db, err := OpenSQLite(context.Background(), path, nil); !chat.IsCode(err, chat.EInvalid) {
			if db != nil {
				db.Close()
			}
			t.Errorf("OpenSQLite(%q) = %v, want EInvalid", path, err)
		}
	}
}

// TestStalledChatHoldsUpNoOtherChat holds one chat's lock, as an append stalled in
// its checks would (descheduled, or reading the chat's rows back): appends to other
// chats still answer, and the held chat's append answers once it is let go, with
// its next seq.
func TestStalledChatHoldsUpNoOtherChat(t *testing.T) {
	ctx := context.Background()
	db := openTestSQLite(t)
	w := sqliteW(db)
	stalled, other := chat.NewSessionID(), chat.NewSessionID()
	if _, _, err := db.Append(ctx, testMessage(stalled, "c-1")); err != nil {
		t.Fatal(err)
	}
	c := w.cache.lock(stalled)
	held := true
	release := func() {
		if held {
			held = false
			c.mu.Unlock()
		}
	}
	t.Cleanup(release)
	waiting := make(chan chat.Message, 1)
	go func() {
		m, _, err := db.Append(ctx, testMessage(stalled, "c-2"))
		if err != nil {
			t.Error(err)
		}
		waiting <- m
	}()
	for i := 1; i <= 3; i++ {
		appendWithin(t, db, testMessage(other, fmt.Sprintf("o-%d", i)), 5*time.Second)
	}
	select {
	case m := <-waiting:
		t.Fatalf("an append to the held chat answered (seq %d) while its lock was held", m.Seq)
	default:
	}
	release()
	select {
	case m := <-waiting:
		if m.Seq != 2 {
			t.Fatalf("the held chat's append got seq %d, want 2", m.Seq)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the held chat's append did not answer once its lock was let go")
	}
	checkContiguous(t, db, other, 3)
	checkContiguous(t, db, stalled, 2)
}
