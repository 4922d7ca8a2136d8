package sqlstore

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"parley/internal/chat"
	"parley/internal/testenv"
)

// countStored returns the session's messages in message_chunks.
func countStored(t *testing.T, db *DB, session string) int {
	t.Helper()
	var n int
	if err := db.db.QueryRow(sqliteChunkCount, session).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// countPending returns the session's messages pending in memory.
func countPending(db *DB, session string) int { return len(db.pending.list(session)) }

// countBatchRows returns the rows of message_pending.
func countBatchRows(t *testing.T, db *DB) int {
	t.Helper()
	var n int
	if err := db.db.QueryRow(`SELECT COUNT(*) FROM message_pending`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// crash closes db as a crash would leave it: without merging what is pending.
func crash(t *testing.T, db *DB) {
	t.Helper()
	sqliteW(db).ready = false
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
}

// checkPages reads the session's messages page by page (4 at a time) and checks every
// page holds the next seqs with their client ids.
func checkPages(t *testing.T, db *DB, session string, n int) {
	t.Helper()
	for after := int64(0); after < int64(n); after += 4 {
		page, err := db.Messages(context.Background(), session, after, 4)
		if err != nil {
			t.Fatal(err)
		}
		for i, m := range page {
			if m.Seq != after+int64(i)+1 || m.ClientID != fmt.Sprintf("c-%d", m.Seq) || m.SessionID != session {
				t.Fatalf("page after %d: message %d is seq %d id %s", after, i, m.Seq, m.ClientID)
			}
		}
		if want := min(4, n-int(after)); len(page) != want {
			t.Fatalf("page after %d holds %d messages, want %d", after, len(page), want)
		}
	}
}

// awaitMerged waits until a merge has stored some of the session's messages and
// taken them out of the pending set. A merge counts itself (merges) only after the
// second: the stored rows show from its commit on, while the pending set still holds
// what it moved.
func awaitMerged(t *testing.T, db *DB, session string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for sqliteW(db).merges.Load() == 0 || countStored(t, db, session) == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("no merge stored any message of %s within 10 s", session)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestPendingMerge keeps a chat's messages split between the pending batches and
// messages (a chat is merged once 5 of its messages are pending) and checks that every read sees them
// as one sequence: pages that cross the two, the last seq, resends of a merged and of
// a pending message, a restart after a crash with messages still pending, a delete of
// a chat with pending messages that a second crash does not bring back, and a new
// chat after the delete starting again at seq 1.
func TestPendingMerge(t *testing.T) {
	ctx := context.Background()
	db, path := openToReopen(t)
	db.pending.rowsDue = 5
	a, b := chat.NewSessionID(), chat.NewSessionID()
	for i := 1; i <= 23; i++ {
		for _, s := range []string{a, b} {
			if _, _, err := db.Append(ctx, testMessage(s, fmt.Sprintf("c-%d", i))); err != nil {
				t.Fatal(err)
			}
		}
	}
	awaitMerged(t, db, a)
	na := 23
	for countPending(db, a) == 0 { // leave some of a's pending
		na++
		if _, _, err := db.Append(ctx, testMessage(a, fmt.Sprintf("c-%d", na))); err != nil {
			t.Fatal(err)
		}
	}
	if sqliteW(db).merges.Load() == 0 || countStored(t, db, a) == 0 {
		t.Fatalf("want a's messages both merged and pending; merges %d, messages %d, pending %d",
			sqliteW(db).merges.Load(), countStored(t, db, a), countPending(db, a))
	}
	checkContiguous(t, db, a, na)
	checkPages(t, db, a, na)
	if last, err := db.LastSeq(ctx, a); err != nil || last != int64(na) {
		t.Fatalf("LastSeq = %d, %v; want %d", last, err, na)
	}
	if m, dup, err := db.Append(ctx, testMessage(a, "c-2")); err != nil || !dup || m.Seq != 2 || m.Text != "text c-2" {
		t.Fatalf("resend of a merged message = %+v dup %v err %v, want seq 2 dup", m, dup, err)
	}
	last := fmt.Sprintf("c-%d", na)
	if m, dup, err := db.Append(ctx, testMessage(a, last)); err != nil || !dup || m.Seq != int64(na) {
		t.Fatalf("resend of a pending message = seq %d dup %v err %v, want seq %d dup", m.Seq, dup, err, na)
	}

	pendingB := countPending(db, b)
	crash(t, db)
	db = openAgain(t, path)
	db.pending.rowsDue = 1000
	if got := countPending(db, b); got != pendingB {
		t.Fatalf("after a crash %d of b's messages are pending again, want %d", got, pendingB)
	}
	checkContiguous(t, db, b, 23)
	checkPages(t, db, a, na)
	if m, dup, err := db.Append(ctx, testMessage(b, "c-23")); err != nil || !dup || m.Seq != 23 {
		t.Fatalf("resend after restart = seq %d dup %v err %v, want seq 23 dup", m.Seq, dup, err)
	}
	if _, _, err := db.Append(ctx, testMessage(b, "c-24")); err != nil { // one more, pending for sure
		t.Fatal(err)
	}
	n, err := db.DeleteSession(ctx, b)
	if err != nil || n != 24 {
		t.Fatalf("DeleteSession = %d, %v; want 24", n, err)
	}
	if got := countStored(t, db, b) + countPending(db, b); got != 0 {
		t.Fatalf("%d messages of a deleted session remain", got)
	}
	if m, dup, err := db.Append(ctx, testMessage(b, "again-1")); err != nil || dup || m.Seq != 1 {
		t.Fatalf("first message after the delete = seq %d dup %v err %v, want seq 1", m.Seq, dup, err)
	}
	crash(t, db)
	db = openAgain(t, path)
	msgs, err := db.Messages(ctx, b, 0, 100)
	if err != nil || len(msgs) != 1 || msgs[0].ClientID != "again-1" {
		t.Fatalf("after the delete and a crash, b holds %+v (%v); want only again-1", msgs, err)
	}
	checkContiguous(t, db, a, na)
}

// TestPendingDrainsWhenIdle checks a quiet writer merges what is pending, so a
// restart has nothing to read back and memory holds nothing.
func TestPendingDrainsWhenIdle(t *testing.T) {
	ctx := context.Background()
	db := openTestSQLite(t)
	s := chat.NewSessionID()
	for i := 1; i <= 3; i++ {
		if _, _, err := db.Append(ctx, testMessage(s, fmt.Sprintf("c-%d", i))); err != nil {
			t.Fatal(err)
		}
	}
	testenv.Eventually(t, 10*time.Second, func() bool { return countPending(db, s) == 0 }, "the idle writer to merge the pending messages")
	if got, batches := countStored(t, db, s), countBatchRows(t, db); got != 3 || batches != 0 {
		t.Fatalf("after the idle merge messages holds %d rows (want 3) and message_pending %d (want 0)", got, batches)
	}
	checkContiguous(t, db, s, 3)
}

// TestPendingCodec round-trips messages through a batch blob, and checks a cut or
// damaged blob is refused rather than read wrong.
func TestPendingCodec(t *testing.T) {
	at := time.Date(2026, 12, 2, 10, 0, 0, 123456000, time.UTC)
	in := []chat.Message{
		{SessionID: "s1", Seq: 1, ClientID: "c1", From: "a@x.org", To: "b@x.org", Room: "r", Kind: chat.KindChat, Text: "héllo 👋", CreatedAt: at},
		{SessionID: "s2", Seq: 1 << 40, ClientID: "c2", From: "b@x.org", Room: "r2", Kind: chat.KindBye, Text: strings.Repeat("x", 300), CreatedAt: at.Add(time.Hour)},
	}
	blob := []byte{pendingVersion}
	for i := range in {
		blob = appendPending(blob, &in[i])
	}
	out, err := decodePending(blob)
	if err != nil || !reflect.DeepEqual(out, in) {
		t.Fatalf("decodePending = %+v, %v; want %+v", out, err, in)
	}
	for _, cut := range []int{0, 1, 5, len(blob) - 1} {
		if _, err := decodePending(blob[:cut]); err == nil {
			t.Errorf("a blob cut to %d bytes decoded", cut)
		}
	}
}

// FuzzDecodePending checks no blob makes the decoder panic or over-read.
func FuzzDecodePending(f *testing.F) {
	m := testMessage("s", "c")
	f.Add(appendPending([]byte{pendingVersion}, &m))
	f.Add([]byte{pendingVersion, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, b []byte) {
		msgs, err := decodePending(b)
		if err == nil {
			again := []byte{pendingVersion}
			for i := range msgs {
				again = appendPending(again, &msgs[i])
			}
			if len(again) > len(b)+len(msgs)*8 {
				t.Fatalf("%d messages re-encode to %d bytes from %d", len(msgs), len(again), len(b))
			}
		}
	})
}

// TestChunkCodec round-trips one chat's messages (both people, a bye, seqs and times
// going up) through a chunk blob, reads a chunk an earlier version wrote (a pending
// batch blob), and checks a cut blob or a bad table index is refused.
func TestChunkCodec(t *testing.T) {
	at := time.Date(2026, 12, 2, 10, 0, 0, 123456000, time.UTC)
	in := []chat.Message{
		{SessionID: "s1", Seq: 7, ClientID: "c1", From: "a@x.org", To: "b@x.org", Room: "r", Kind: chat.KindChat, Text: "héllo 👋", CreatedAt: at},
		{SessionID: "s1", Seq: 8, ClientID: "c2", From: "b@x.org", To: "a@x.org", Room: "r", Kind: chat.KindChat, Text: "", CreatedAt: at.Add(-time.Second)},
		{SessionID: "s1", Seq: 9, ClientID: "c3", From: "a@x.org", To: "b@x.org", Room: "r", Kind: chat.KindBye, Text: strings.Repeat("x", 300), CreatedAt: at.Add(time.Hour)},
	}
	ptrs := []*chat.Message{&in[0], &in[1], &in[2]}
	var e chunkEncoder
	blob := e.appendChunk(nil, ptrs)
	if out, err := decodeChunk(blob); err != nil || !reflect.DeepEqual(out, in) {
		t.Fatalf("decodeChunk = %+v, %v; want %+v", out, err, in)
	}
	if again := e.appendChunk(nil, ptrs); !bytes.Equal(again, blob) {
		t.Fatal("the encoder's reused table changed the next chunk's encoding")
	}
	old := []byte{pendingVersion}
	for i := range in {
		old = appendPending(old, &in[i])
	}
	if out, err := decodeChunk(old); err != nil || !reflect.DeepEqual(out, in) {
		t.Fatalf("decodeChunk of an earlier version's row = %+v, %v; want %+v", out, err, in)
	}
	for _, cut := range []int{0, 1, 2, 5, len(blob) - 1} {
		if _, err := decodeChunk(blob[:cut]); err == nil {
			t.Errorf("a chunk cut to %d bytes decoded", cut)
		}
	}
	// The first message's chunk has a table of five values: index 6 names nothing.
	bad := append(e.appendChunk(nil, ptrs[:1]), 6, 0, 0, 0, 0, 0, 0, 2, 2)
	if _, err := decodeChunk(bad); err == nil {
		t.Error("a chunk whose message names a value past its table decoded")
	}
}

// TestChunksStoreWhatTheyShareOnce checks a chunk writes a chat's session id, room,
// people and kind once, not in every message: a second of a busy chat (36 messages
// of 32 characters, the load of `parley bench` at 1,000 rooms) takes at most half the
// bytes of the same messages as pending batch records, and fits in one page with the
// row's other columns, so a merge writes no overflow page for it.
func TestChunksStoreWhatTheyShareOnce(t *testing.T) {
	session, at := chat.NewSessionID(), time.Now()
	msgs := make([]chat.Message, 36)
	ptrs := make([]*chat.Message, len(msgs))
	perMessage := []byte{pendingVersion}
	for i := range msgs {
		from, to := "bench-3f9a2c-room-0417-a@parley.test", "bench-3f9a2c-room-0417-b@parley.test"
		if i%2 == 1 {
			from, to = to, from
		}
		msgs[i] = chat.Message{SessionID: session, Seq: int64(i + 1), ClientID: fmt.Sprintf("a-%d", i+1), From: from, To: to,
			Room: "bench-3f9a2c-0417", Kind: chat.KindChat, Text: strings.Repeat("m", 32), CreatedAt: at.Add(time.Duration(i) * 27 * time.Millisecond)}
		ptrs[i] = &msgs[i]
		perMessage = appendPending(perMessage, &msgs[i])
	}
	var e chunkEncoder
	chunk := e.appendChunk(nil, ptrs)
	if len(chunk) > len(perMessage)/2 || len(chunk)+len(session)+64 > 4096/4*3 {
		t.Fatalf("a chunk of %d messages takes %d bytes (%d as batch records); want at most half, and well inside a 4 KiB page",
			len(msgs), len(chunk), len(perMessage))
	}
	t.Logf("%d messages: %d bytes as a chunk, %d as batch records", len(msgs), len(chunk), len(perMessage))
}

// FuzzDecodeChunk checks no blob makes the chunk decoder panic or over-read.
func FuzzDecodeChunk(f *testing.F) {
	m := testMessage("s", "c")
	var e chunkEncoder
	f.Add(e.appendChunk(nil, []*chat.Message{&m, &m}))
	f.Add([]byte{chunkVersion, 1, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, b []byte) {
		msgs, err := decodeChunk(b)
		if err == nil && len(msgs) > len(b) {
			t.Fatalf("%d messages from %d bytes", len(msgs), len(b))
		}
	})
}

// oldSQLite creates a SQLite file at path as a Parley with only the first n
// migrations left it, and returns it with a connection to fill it through; the caller
// closes both before opening the file with OpenSQLite.
func oldSQLite(t *testing.T, path string, n int) (*sql.DB, *sql.Conn) {
	t.Helper()
	old, err := sql.Open("sqlite", path+"?"+sqlitePragmas)
	if err != nil {
		t.Fatal(err)
	}
	return old, applyFirst(t, newDB(old, dialectSQLite, nil), n)
}

// applyFirst creates the migrations table of d's empty database and applies d's first
// n migrations, on a connection it returns.
func applyFirst(t *testing.T, d *DB, n int) *sql.Conn {
	t.Helper()
	ctx := context.Background()
	ms, err := d.migrations()
	if err != nil {
		t.Fatal(err)
	}
	conn, err := d.db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.ExecContext(ctx, `CREATE TABLE schema_migrations (
		version INTEGER NOT NULL PRIMARY KEY, name VARCHAR(255) NOT NULL, applied_at BIGINT NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	for _, m := range ms[:n] {
		if err := d.apply(ctx, conn, m); err != nil {
			t.Fatal(err)
		}
	}
	return conn
}

// TestUpgradeKeepsMessages opens a database left by a Parley before the message log
// (schema version 2: messages with a unique client-id index, no message_log) and
// checks that its messages are all still read, in order, that a resend of an old id
// is still a duplicate, and that appending continues after them.
func TestUpgradeKeepsMessages(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "parley.db")
	old, conn := oldSQLite(t, path, 2)
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

// TestUpgradeFromMessageLog opens a database left by a Parley with message_log
// (schema version 8), one chat's messages split between messages and the log, and
// checks they are all read, in order, after the upgrade, that a resend of a logged id
// is a duplicate, and that the old tables hold nothing any more.
func TestUpgradeFromMessageLog(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "parley.db")
	old, conn := oldSQLite(t, path, 8)
	session := chat.NewSessionID()
	for seq := 1; seq <= 40; seq++ {
		q := `INSERT INTO messages (` + messageCols + `) VALUES (?, ?, ?, 'a@x.org', 'b@x.org', 'r', 'chat', 'old', 1)`
		args := []any{session, seq, fmt.Sprintf("c-%d", seq)}
		if seq > 25 {
			q = `INSERT INTO message_log (part, id, ` + messageCols + `) VALUES (3, ?, ?, ?, ?, 'a@x.org', 'b@x.org', 'r', 'chat', 'old', 1)`
			args = append([]any{seq}, args...)
		}
		if _, err := conn.ExecContext(ctx, q, args...); err != nil {
			t.Fatal(err)
		}
	}
	conn.Close()
	old.Close()

	db := openAgain(t, path)
	checkContiguous(t, db, session, 40)
	checkPages(t, db, session, 40)
	if m, dup, err := db.Append(ctx, testMessage(session, "c-33")); err != nil || !dup || m.Seq != 33 {
		t.Fatalf("resend of a logged message = seq %d dup %v err %v, want seq 33 dup", m.Seq, dup, err)
	}
	var left int
	if err := db.db.QueryRow(`SELECT COUNT(*) FROM messages`).Scan(&left); err != nil || left != 0 {
		t.Fatalf("messages holds %d rows (%v) after the conversion, want 0", left, err)
	}
	if got := countStored(t, db, session); got != 40 {
		t.Fatalf("message_chunks holds %d of the chat's messages, want 40", got)
	}
}

// TestSecondProcessRefused checks a second open of an embedded database that is open
// already (as a second Parley process would) fails with a clear error, and succeeds
// once the first has closed it.
func TestSecondProcessRefused(t *testing.T) {
	db, path := openToReopen(t)
	if _, err := OpenSQLite(context.Background(), path, testLogger(t)); err == nil || !strings.Contains(err.Error(), "open in another Parley process") {
		t.Fatalf("second open = %v, want refused as open in another process", err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	openAgain(t, path)
}

// TestPendingReadsDuringMerges appends to a few chats from many goroutines while the
// chats are merged every 3 messages, and reads them all along: every read sees each
// chat as one gap-free run from seq 1 (a message moving from memory to
// message_chunks is never missed or seen twice), at least as long as the last
// acknowledged append, and LastSeq never goes back.
func TestPendingReadsDuringMerges(t *testing.T) {
	ctx := context.Background()
	db := openTestSQLite(t)
	db.pending.rowsDue = 3
	sessions := []string{chat.NewSessionID(), chat.NewSessionID(), chat.NewSessionID()}
	var acked [3]atomic.Int64
	done := make(chan struct{})
	var writers sync.WaitGroup
	var sent atomic.Int64
	for g := range 12 {
		writers.Go(func() {
			// Until ten merges ran (they run on the writer's tick, beside the appends),
			// at least 60 each and at most 20,000.
			for i := 0; i < 20000 && (i < 60 || sqliteW(db).merges.Load() < 10); i++ {
				sent.Add(1)
				k := (g + i) % len(sessions)
				m, _, err := db.Append(ctx, testMessage(sessions[k], fmt.Sprintf("g%d-%d", g, i)))
				if err != nil {
					t.Error(err)
					return
				}
				for {
					old := acked[k].Load()
					if m.Seq <= old || acked[k].CompareAndSwap(old, m.Seq) {
						break
					}
				}
			}
		})
	}
	var readers sync.WaitGroup
	// The appends reload what they know of a chat (its last seq and client ids) from
	// the pending and stored messages while merges move them from one to the other.
	readers.Go(func() {
		w := sqliteW(db)
		for {
			select {
			case <-done:
				return
			default:
			}
			for _, s := range sessions {
				c := w.cache.lock(s)
				c.forget()
				c.mu.Unlock()
			}
			runtime.Gosched()
		}
	})
	for k, s := range sessions {
		readers.Go(func() {
			var lastSeen int64
			for {
				select {
				case <-done:
					return
				default:
				}
				floor := acked[k].Load()
				msgs, err := db.Messages(ctx, s, 0, 10000)
				if err != nil {
					t.Error(err)
					return
				}
				for i, m := range msgs {
					if m.Seq != int64(i+1) {
						t.Errorf("chat %d read as seqs with a gap or a repeat at %d: seq %d", k, i, m.Seq)
						return
					}
				}
				if int64(len(msgs)) < floor {
					t.Errorf("chat %d read %d messages after %d were acknowledged", k, len(msgs), floor)
					return
				}
				last, err := db.LastSeq(ctx, s)
				if err != nil || last < lastSeen || last < floor {
					t.Errorf("chat %d LastSeq %d (%v) after %d seen and %d acknowledged", k, last, err, lastSeen, floor)
					return
				}
				lastSeen = last
			}
		})
	}
	writers.Wait()
	close(done)
	readers.Wait()
	if sqliteW(db).merges.Load() < 10 {
		t.Fatalf("only %d merges ran; the test needs reads racing merges", sqliteW(db).merges.Load())
	}
	total := 0
	for _, s := range sessions {
		n, _ := db.LastSeq(ctx, s)
		total += int(n)
		checkContiguous(t, db, s, int(n))
	}
	if total != int(sent.Load()) {
		t.Fatalf("%d messages stored, want %d", total, sent.Load())
	}
}

// TestPendingDueByAge checks the merge's choice of quiet chats: a chat whose oldest
// pending message waited mergeAge is due and a younger one is not (even behind a
// stale entry of its own, left when it was merged by other ways), a partly merged
// chat stays due for what is left, from the merge's start, and chats merged over and
// over by other ways (idle merges) do not pile up entries.
func TestPendingDueByAge(t *testing.T) {
	p := newPendingSet()
	p.budget = 1 << 20
	seg := &logSegment{}
	add := func(session string, seq int64) time.Time {
		m := testMessage(session, fmt.Sprintf("c-%d", seq))
		m.Seq = seq
		sh := p.shard(session)
		sh.mu.Lock()
		defer sh.mu.Unlock()
		p.addLogged(sh, &m, seg)
		return sh.chats[session].since
	}
	merged := func(session string, n int, taken time.Time) {
		p.merged([]string{session}, []int{n}, taken)
	}
	quiet, busy := chat.NewSessionID(), chat.NewSessionID()
	first := add(quiet, 1)
	t0 := add(busy, 1) // no earlier than first
	add(busy, 2)
	if got := p.due(false, first.Add(mergeAge-time.Nanosecond)); len(got) != 0 {
		t.Fatalf("due before mergeAge: %v, want none", got)
	}
	got := p.due(false, t0.Add(mergeAge))
	slices.Sort(got)
	want := []string{quiet, busy}
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("due after mergeAge: %v, want %v", got, want)
	}
	merged(quiet, 1, t0)
	merged(busy, 1, t0) // in part: a message came during the merge, which began at t0

	// The quiet chat is merged in full by other ways (idle, mergeRows) without being
	// chosen by age, leaving its entry; its next message comes later.
	t1 := add(quiet, 2)
	merged(quiet, 1, t1)
	for !time.Now().After(t1) { // the next message comes later than the stale entry
	}
	t2 := add(quiet, 3)
	if got := p.due(false, t2.Add(mergeAge-time.Nanosecond)); !slices.Equal(got, []string{busy}) {
		t.Fatalf("due before the new message aged: %v, want only the partly merged chat %s", got, busy)
	}
	if got := p.due(false, t2.Add(mergeAge)); !slices.Equal(got, []string{quiet}) {
		t.Fatalf("due once the new message aged: %v, want %s", got, quiet)
	}

	// Many rounds of a message and an idle merge of everything: the queue stays bounded.
	sh := p.shard(quiet)
	for i := range 5000 {
		add(quiet, int64(4+i))
		for _, s := range p.due(true, t2) {
			merged(s, len(p.list(s)), t2)
		}
		p.due(false, t2) // nothing aged: only the bound is kept
	}
	if n := sh.aging.len(); n > 2*len(sh.chats)+1024/pendingShards+1 {
		t.Fatalf("%d entries queued by age for %d pending chats", n, len(sh.chats))
	}
}
