package sqlstore

import (
	"context"
	"strconv"
	"testing"

	"parley/internal/chat"
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
