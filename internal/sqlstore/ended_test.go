package sqlstore

import (
	"context"
	"sync"
	"testing"

	"parley/internal/chat"
)

// TestAppendAfterEnd checks that the store orders a message and the end of its chat:
// once the session row says the chat ended, a new message is refused (it could not be
// in the transcript), while a resend of a message stored before the end still gets its
// original answer. Messages racing the end are either stored before it or refused.
func TestAppendAfterEnd(t *testing.T) {
	dialects := map[string]func(testing.TB) *DB{"SQLite": openTestSQLite, "MySQL": openTestMySQL}
	for name, open := range dialects {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			db := open(t)
			s, _, err := db.Enter(ctx, "ended-"+chat.NewSessionID()[:8], "ann@example.org", chat.Now())
			if err != nil {
				t.Fatal(err)
			}
			msg := func(id string) chat.Message {
				return chat.Message{SessionID: s.ID, ClientID: id, From: "ann@example.org", Room: s.Room, Kind: chat.KindChat, Text: "hi"}
			}
			before, _, err := db.Append(ctx, msg("before"))
			if err != nil {
				t.Fatal(err)
			}

			// Appends racing the end: each is either stored (and so before the end)
			// or refused with chat_ended; none is stored after the end was recorded.
			var wg sync.WaitGroup
			stored := make(chan chat.Message, 50)
			for i := range 50 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					m, _, err := db.Append(ctx, msg("race-"+string(rune('a'+i%26))+string(rune('a'+i/26))))
					switch {
					case err == nil:
						stored <- m
					case !chat.IsCode(err, chat.EChatEnded):
						t.Errorf("racing append: %v", err)
					}
				}()
			}
			if won, err := db.End(ctx, s.ID, "ann@example.org", chat.Now()); err != nil || !won {
				t.Fatalf("End = %v, %v", won, err)
			}
			wg.Wait()
			close(stored)

			if _, _, err := db.Append(ctx, msg("after")); !chat.IsCode(err, chat.EChatEnded) {
				t.Fatalf("append after the end: err = %v, want chat_ended", err)
			}
			again, dup, err := db.Append(ctx, msg("before"))
			if err != nil || !dup || again.Seq != before.Seq {
				t.Fatalf("resend of a message stored before the end = seq %d dup %v err %v, want seq %d dup", again.Seq, dup, err, before.Seq)
			}
			all, err := db.Messages(ctx, s.ID, 0, 1000)
			if err != nil {
				t.Fatal(err)
			}
			if want := 1 + len(stored); len(all) != want {
				t.Fatalf("the session holds %d messages, want %d (the first plus every acknowledged racer)", len(all), want)
			}
		})
	}
}
