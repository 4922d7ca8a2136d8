package sqlstore

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"sync"
	"testing"
	"time"

	"parley/internal/chat"
)

func randomHash() string {
	var b [32]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// TestSignInStore checks the sign-in links on both dialects: a link gives its email
// and room once; used, unknown and expired links are ENotFound; of many concurrent
// uses exactly one wins.
func TestSignInStore(t *testing.T) {
	for _, st := range testStores(t) {
		t.Run(st.name, func(t *testing.T) {
			if st.name == "MySQL" {
				testMySQLDSN(t)
			}
			db := st.open(t)
			ctx := context.Background()
			now := chat.Now()

			t.Run("OnceOnly", func(t *testing.T) {
				h := randomHash()
				if err := db.CreateSignIn(ctx, h, "a@example.org", "room-1", now.Add(chat.SignInTTL)); err != nil {
					t.Fatal(err)
				}
				email, room, err := db.ConsumeSignIn(ctx, h, now)
				if err != nil || email != "a@example.org" || room != "room-1" {
					t.Fatalf("ConsumeSignIn = %q, %q, %v", email, room, err)
				}
				if _, _, err := db.ConsumeSignIn(ctx, h, now); !chat.IsCode(err, chat.ENotFound) {
					t.Fatalf("second use: %v, want not_found", err)
				}
			})
			t.Run("Unknown", func(t *testing.T) {
				if _, _, err := db.ConsumeSignIn(ctx, randomHash(), now); !chat.IsCode(err, chat.ENotFound) {
					t.Fatalf("unknown: %v, want not_found", err)
				}
			})
			t.Run("Expired", func(t *testing.T) {
				h := randomHash()
				if err := db.CreateSignIn(ctx, h, "a@example.org", "r", now.Add(time.Minute)); err != nil {
					t.Fatal(err)
				}
				if _, _, err := db.ConsumeSignIn(ctx, h, now.Add(time.Minute)); !chat.IsCode(err, chat.ENotFound) {
					t.Fatalf("expired: %v, want not_found", err)
				}
			})
			t.Run("Concurrent", func(t *testing.T) {
				h := randomHash()
				if err := db.CreateSignIn(ctx, h, "a@example.org", "r", now.Add(time.Minute)); err != nil {
					t.Fatal(err)
				}
				var wg sync.WaitGroup
				var mu sync.Mutex
				wins := 0
				for range 8 {
					wg.Add(1)
					go func() {
						defer wg.Done()
						if _, _, err := db.ConsumeSignIn(ctx, h, now); err == nil {
							mu.Lock()
							wins++
							mu.Unlock()
						} else if !chat.IsCode(err, chat.ENotFound) {
							t.Error(err)
						}
					}()
				}
				wg.Wait()
				if wins != 1 {
					t.Fatalf("%d uses succeeded, want 1", wins)
				}
			})
		})
	}
}
