package sqlstore

import (
	"context"
	"fmt"
	"hash/maphash"
	"strings"
	"sync"
	"testing"

	"parley/internal/chat"
)

// TestSQLiteDedupeSurvivesHashCollisions makes every client id hash alike, so the
// writer's filter always hits: each new id must still be stored once, and each resend
// (including of an id whose hash now points at a newer message) must get its own seq.
func TestSQLiteDedupeSurvivesHashCollisions(t *testing.T) {
	ctx := context.Background()
	db := openTestSQLite(t)
	sqliteW(db).cache.hashf = func(maphash.Seed, string) uint64 { return 7 }
	session := chat.NewSessionID()
	for i := 1; i <= 20; i++ {
		m, dup, err := db.Append(ctx, testMessage(session, fmt.Sprintf("id-%d", i)))
		if err != nil || dup || m.Seq != int64(i) {
			t.Fatalf("new id-%d = seq %d dup %v err %v, want seq %d stored", i, m.Seq, dup, err, i)
		}
	}
	for _, i := range []int{1, 20, 7} {
		m, dup, err := db.Append(ctx, testMessage(session, fmt.Sprintf("id-%d", i)))
		if err != nil || !dup || m.Seq != int64(i) || m.Text != fmt.Sprintf("text id-%d", i) {
			t.Fatalf("resend of id-%d = seq %d dup %v err %v, want the stored seq %d", i, m.Seq, dup, err, i)
		}
	}
	checkContiguous(t, db, session, 20)
}

// TestSQLiteDedupeAfterRestart resends, after the store was closed and opened again,
// a message stored before: the filter is rebuilt from the rows, so it is a duplicate.
func TestSQLiteDedupeAfterRestart(t *testing.T) {
	ctx := context.Background()
	db, path := openToReopen(t)
	session := chat.NewSessionID()
	first, _, err := db.Append(ctx, testMessage(session, "c-1"))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := db.Append(ctx, testMessage(session, "c-2")); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db = openAgain(t, path)
	again, dup, err := db.Append(ctx, testMessage(session, "c-1"))
	if err != nil || !dup || again.Seq != first.Seq {
		t.Fatalf("resend after restart = seq %d dup %v err %v, want seq %d dup", again.Seq, dup, err, first.Seq)
	}
	next, dup, err := db.Append(ctx, testMessage(session, "c-3"))
	if err != nil || dup || next.Seq != 3 {
		t.Fatalf("new message after restart = seq %d dup %v err %v, want seq 3", next.Seq, dup, err)
	}
}

// TestSQLiteDedupeOfConcurrentResends sends each client id from two goroutines at
// once, many at a time, with every hash alike, so each repeat is checked against
// the pending messages the other appends just added. Each id must be stored once,
// and both of its senders must get its one seq.
func TestSQLiteDedupeOfConcurrentResends(t *testing.T) {
	ctx := context.Background()
	db := openTestSQLite(t)
	sqliteW(db).cache.hashf = func(maphash.Seed, string) uint64 { return 7 }
	session := chat.NewSessionID()
	const ids = 150
	seqs := make([][2]int64, ids)
	var wg sync.WaitGroup
	for i := range ids {
		for copy := range 2 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				m, _, err := db.Append(ctx, testMessage(session, fmt.Sprintf("id-%d", i)))
				if err != nil {
					t.Error(err)
					return
				}
				seqs[i][copy] = m.Seq
			}()
		}
	}
	wg.Wait()
	checkContiguous(t, db, session, ids)
	for i, s := range seqs {
		if s[0] != s[1] {
			t.Fatalf("the two sends of id-%d got seqs %d and %d", i, s[0], s[1])
		}
	}
}

// remembers reports whether the cache holds an entry for session.
func (c *sqliteCache) remembers(session string) bool {
	sh := &c.shards[maphash.String(c.seed, session)%cacheShards]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	return sh.chats[session] != nil
}

// sqliteW returns the SQLite side of db's writer.
func sqliteW(db *DB) *sqliteWriter { return db.w.dialect.(*sqliteWriter) }

// TestSQLiteCacheForgetsChatsPastItsBound appends to more chats than the writer
// remembers, until it forgot the first: that chat must continue at its next seq and
// still know a resend of its first message.
func TestSQLiteCacheForgetsChatsPastItsBound(t *testing.T) {
	ctx := context.Background()
	db := openTestSQLite(t)
	first := chat.NewSessionID()
	for i := 1; i <= 2; i++ {
		if _, _, err := db.Append(ctx, testMessage(first, fmt.Sprintf("id-%d", i))); err != nil {
			t.Fatal(err)
		}
	}
	// A chat is forgotten once its shard holds its share of maxCachedSessions; the
	// shards fill at random, so four times the bound makes it certain in practice.
	for i := 0; sqliteW(db).cache.remembers(first); i++ {
		if i == 4*maxCachedSessions {
			t.Fatalf("the first chat is still remembered after %d others; the bound was not reached", i)
		}
		if _, _, err := db.Append(ctx, testMessage(chat.NewSessionID(), "only")); err != nil {
			t.Fatalf("chat %d: %v", i, err)
		}
	}
	m, dup, err := db.Append(ctx, testMessage(first, "id-1"))
	if err != nil || !dup || m.Seq != 1 {
		t.Fatalf("resend of id-1 after the chat was forgotten = seq %d dup %v err %v, want seq 1 dup", m.Seq, dup, err)
	}
	m, dup, err = db.Append(ctx, testMessage(first, "id-3"))
	if err != nil || dup || m.Seq != 3 {
		t.Fatalf("new message after the chat was forgotten = seq %d dup %v err %v, want seq 3", m.Seq, dup, err)
	}
	checkContiguous(t, db, first, 3)
}

// TestChatKeepsNoLongRecordBuffer sends a long message and then a short one to a
// chat: the chat keeps a short message's record buffer for its next append, but not
// the long one's, so remembered chats do not each hold a long message's worth.
func TestChatKeepsNoLongRecordBuffer(t *testing.T) {
	ctx := context.Background()
	db := openTestSQLite(t)
	session := chat.NewSessionID()
	kept := func() int {
		c := sqliteW(db).cache.lock(session)
		defer c.mu.Unlock()
		return cap(c.rec)
	}
	long := testMessage(session, "long")
	long.Text = strings.Repeat("é", chat.DefaultMaxText)
	if _, _, err := db.Append(ctx, long); err != nil {
		t.Fatal(err)
	}
	if n := kept(); n > maxKeptRecord {
		t.Fatalf("after a long message the chat keeps a %d-byte record buffer, want at most %d", n, maxKeptRecord)
	}
	if _, _, err := db.Append(ctx, testMessage(session, "short")); err != nil {
		t.Fatal(err)
	}
	if n := kept(); n == 0 {
		t.Fatal("after a short message the chat keeps no record buffer for its next append")
	}
	checkContiguous(t, db, session, 2)
}
