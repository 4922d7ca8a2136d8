package sqlstore

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"parley/internal/chat"
	"parley/internal/testenv"
)

// appendWithin appends m and fails t unless the append answers within d: an append
// that waits on the file system's slow calls (held by a test) never answers.
func appendWithin(t *testing.T, db *DB, m chat.Message, d time.Duration) {
	t.Helper()
	done := make(chan error, 1)
	go func() {
		_, _, err := db.Append(context.Background(), m)
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(d):
		t.Fatalf("an append waited over %v for the message log's file system calls", d)
	}
}

// TestRotationUsesSegmentMadeReady checks that beginning a new log segment does not
// make appends wait for the file system: the next segment is created, allocated
// and its directory entry synced while the current one fills, so the append that
// fills it only swaps files. A directory sync after that fails the test; every
// message reads back after a crash.
func TestRotationUsesSegmentMadeReady(t *testing.T) {
	db, path := openToReopen(t)
	w := sqliteW(db)
	session := chat.NewSessionID()
	text := strings.Repeat("x", 8000) // a segment in about 1,000 appends
	syncs := make(chan string, 1)
	w.lmu.Lock()
	first := w.log.seg
	w.log.fs.syncDir = func(dir string) error {
		syncs <- dir
		return syncDir(dir)
	}
	w.lmu.Unlock()
	n := 0
	appendOne := func() {
		n++
		m := testMessage(session, fmt.Sprintf("m-%d", n))
		m.Text = text
		appendWithin(t, db, m, 10*time.Second)
	}
	for range logSegmentBytes / 2 / len(text) {
		appendOne()
	}
	select {
	case <-syncs: // the next segment's directory entry, synced beside the appends
	case <-time.After(10 * time.Second):
		t.Fatal("no segment was made ready while the current one filled past half")
	}
	testenv.Eventually(t, 10*time.Second, func() bool {
		w.lmu.Lock()
		defer w.lmu.Unlock()
		return len(w.log.next) == 1
	}, "the next segment to be ready")
	w.lmu.Lock()
	w.log.fs.syncDir = func(string) error {
		return errors.New("a directory sync while the segment made ready waits")
	}
	w.lmu.Unlock()
	for {
		appendOne()
		w.lmu.Lock()
		rotated := w.log.seg != first
		w.lmu.Unlock()
		if rotated {
			break
		}
	}
	crash(t, db)
	checkContiguous(t, openAgain(t, path), session, n)
}

// emptiedSegments fills a few log segments with messages of session, seals them and
// waits until the merges have taken every message of them: the next checkpoint
// deletes their files. It returns how many messages it stored.
func emptiedSegments(t *testing.T, db *DB, session string) int {
	t.Helper()
	db.pending.rowsDue = 3
	w := sqliteW(db)
	const n = 300
	for i := range n {
		if _, _, err := db.Append(context.Background(), testMessage(session, fmt.Sprintf("m-%d", i))); err != nil {
			t.Fatal(err)
		}
		if i%100 == 99 {
			w.lmu.Lock()
			err := w.log.rotate()
			w.lmu.Unlock()
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	testenv.Eventually(t, 10*time.Second, func() bool { return countPending(db, session) == 0 },
		"the merges to take every message")
	return n
}

// logFiles lists the segment files of db's message log.
func logFiles(t *testing.T, db *DB) []string {
	t.Helper()
	entries, err := os.ReadDir(sqliteW(db).log.dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

// TestDeletingSegmentsLeavesAppendsFree holds the deletion of merged log segments
// (an unlink of a segment's allocated blocks takes milliseconds): appends go on
// meanwhile, and the files are gone once it proceeds.
func TestDeletingSegmentsLeavesAppendsFree(t *testing.T) {
	db := openTestSQLite(t)
	w := sqliteW(db)
	session := chat.NewSessionID()
	n := emptiedSegments(t, db, session)
	entered, release := make(chan struct{}), make(chan struct{})
	var once, released sync.Once
	free := func() { released.Do(func() { close(release) }) }
	t.Cleanup(free) // before the store closes, even when the test fails
	w.lmu.Lock()
	w.log.fs.remove = func(path string) error {
		once.Do(func() { close(entered) })
		<-release
		return os.Remove(path)
	}
	w.lmu.Unlock()
	select {
	case <-entered: // the checkpointer (every second) deletes the emptied segments
	case <-time.After(10 * time.Second):
		t.Fatal("no checkpoint deleted the emptied segments")
	}
	appendWithin(t, db, testMessage(session, "during"), 5*time.Second)
	free()
	testenv.Eventually(t, 10*time.Second, func() bool { return len(logFiles(t, db)) == 1 },
		"only the current segment to be left")
	checkContiguous(t, db, session, n+1)
}

// TestFailedSegmentDeletionKeepsOrder fails the deletion of the oldest emptied
// segment once: no later segment may go before it (a later one may hold the drop
// record that outlives its messages), and the next checkpoint deletes them all.
func TestFailedSegmentDeletionKeepsOrder(t *testing.T) {
	db := openTestSQLite(t)
	w := sqliteW(db)
	session := chat.NewSessionID()
	n := emptiedSegments(t, db, session)
	var mu sync.Mutex
	var calls []string // each call: the file's name, "!" when it failed
	w.lmu.Lock()
	w.log.fs.remove = func(path string) error {
		mu.Lock()
		defer mu.Unlock()
		name := path[strings.LastIndexByte(path, os.PathSeparator)+1:]
		if len(calls) == 0 {
			calls = append(calls, name+"!")
			return errors.New("the disk refused")
		}
		calls = append(calls, name)
		return os.Remove(path)
	}
	w.lmu.Unlock()
	// One more message, so the last sealed segment's batch closes and it empties too.
	if _, _, err := db.Append(context.Background(), testMessage(session, "after")); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 15*time.Second, func() bool { return len(logFiles(t, db)) == 1 },
		"a later checkpoint to delete every emptied segment")
	mu.Lock()
	defer mu.Unlock()
	if len(calls) < 4 || calls[1]+"!" != calls[0] || !slices.IsSorted(calls[1:]) {
		t.Fatalf("deletions %q: want the failed one first again, then the rest in order", calls)
	}
	checkContiguous(t, db, session, n+1)
}

// TestLiveRecordKeepsItsSegment writes a message record the way an append does,
// before the message joins the pending set (the append adds it after letting the
// log's lock go): the segment, sealed, must not count as emptied, or a checkpoint
// would delete the only copy of a message that is not merged yet. Once the message
// is counted out (merged or dropped), it does.
func TestLiveRecordKeepsItsSegment(t *testing.T) {
	db := openTestSQLite(t)
	w := sqliteW(db)
	m := testMessage(chat.NewSessionID(), "c-1")
	m.Seq = 1
	w.lmu.Lock()
	seg, err := w.log.appendMessage(messageRecord(nil, &m))
	if err != nil {
		t.Fatal(err)
	}
	if err := w.log.rotate(); err != nil {
		t.Fatal(err)
	}
	w.lmu.Unlock()
	emptied := func() bool {
		w.lmu.Lock()
		defer w.lmu.Unlock()
		files, _, emptied := w.log.beforeCheckpoint()
		w.log.unsynced = append(files, w.log.unsynced...) // left for the store's own checkpoints
		return slices.Contains(emptied, seg)
	}
	if emptied() {
		t.Fatal("a segment counts as emptied while a message record in it is neither merged nor dropped")
	}
	w.unlive(map[*logSegment]int{seg: 1}) // as if merged
	if !emptied() {
		t.Fatal("the sealed segment with nothing live does not count as emptied")
	}
}
