package sqlstore

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"parley/internal/chat"
	"parley/internal/testenv"
)

// TestCheckpointCopiesWAL checks that a timed checkpoint copies every committed WAL
// frame back into the database file.
func TestCheckpointCopiesWAL(t *testing.T) {
	db := openTestSQLite(t)
	ctx := context.Background()
	id := chat.NewSessionID()
	for i := range 50 {
		m := chat.Message{SessionID: id, ClientID: "c" + strconv.Itoa(i), From: "a@example.com",
			Room: "r", Kind: chat.KindChat, Text: "hello"}
		if _, _, err := db.Append(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.ckpt.once(); err != nil {
		t.Fatal(err)
	}
	var busy, logFrames, copied int
	if err := db.db.QueryRowContext(ctx, `PRAGMA wal_checkpoint(PASSIVE)`).Scan(&busy, &logFrames, &copied); err != nil {
		t.Fatal(err)
	}
	if busy != 0 || logFrames != copied {
		t.Fatalf("after a checkpoint: busy %d, %d frames in the WAL, %d copied", busy, logFrames, copied)
	}
	var auto int
	if err := db.db.QueryRowContext(ctx, `PRAGMA wal_autocheckpoint`).Scan(&auto); err != nil {
		t.Fatal(err)
	}
	if strconv.Itoa(auto) != sqliteAutoCheckpoint {
		t.Fatalf("wal_autocheckpoint = %d, want %s", auto, sqliteAutoCheckpoint)
	}
}

// TestCheckpointBesideMerges runs the checkpointer's part of the message log (which
// segments are emptied) over and over while appends rotate segments and merges empty
// them, as the one-second checkpointer does beside a busy writer: under -race it
// fails if the two read and change what a segment still holds without a common lock.
// Every message must still read back.
func TestCheckpointBesideMerges(t *testing.T) {
	ctx := context.Background()
	db := openTestSQLite(t)
	db.pending.rowsDue = 3
	w := sqliteW(db)
	session := chat.NewSessionID()
	done := make(chan struct{})
	var checkpoints sync.WaitGroup
	checkpoints.Go(func() {
		for {
			select {
			case <-done:
				return
			default:
			}
			if covered := w.beforeCheckpoint(); covered != nil {
				covered()
			}
		}
	})
	const n = 3000
	for i := range n {
		if _, _, err := db.Append(ctx, testMessage(session, fmt.Sprintf("m-%d", i))); err != nil {
			t.Fatal(err)
		}
		if i%500 == 0 { // new segments, so some fill, seal and empty while checkpoints run
			w.lmu.Lock()
			err := w.log.rotate()
			w.lmu.Unlock()
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	// The checkpoints go on while the merges drain what is pending, with no append
	// between them any more.
	testenv.Eventually(t, 10*time.Second, func() bool { return countPending(db, session) < logBatch },
		"the merges to drain all but the open batch")
	close(done)
	checkpoints.Wait()
	checkContiguous(t, db, session, n)
}
