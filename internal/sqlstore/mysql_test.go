package sqlstore

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"

	"parley/internal/chat"
)

// TestMySQLReplicasAppendToOneSession runs several stores, each with its own writer and
// connection pool as separate replicas would, appending to the same sessions at once:
// every seq is given exactly once and none is skipped.
func TestMySQLReplicasAppendToOneSession(t *testing.T) {
	const replicas, writers, per = 4, 8, 25
	stores := make([]*DB, replicas)
	for i := range stores {
		stores[i] = openTestMySQL(t)
	}
	sessions := []string{chat.NewSessionID(), chat.NewSessionID(), chat.NewSessionID()}
	var mu sync.Mutex
	given := map[string]string{} // session/seq → client id
	var wg sync.WaitGroup
	for r, db := range stores {
		for w := range writers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range per {
					session := sessions[(w+i)%len(sessions)]
					m, dup, err := db.Append(context.Background(), testMessage(session, fmt.Sprintf("r%d-w%d-%d", r, w, i)))
					if err != nil || dup {
						t.Errorf("Append: dup %v err %v", dup, err)
						return
					}
					key := fmt.Sprintf("%s/%d", session, m.Seq)
					mu.Lock()
					if prev, ok := given[key]; ok {
						t.Errorf("seq %s given twice: %s and %s", key, prev, m.ClientID)
					}
					given[key] = m.ClientID
					mu.Unlock()
				}
			}()
		}
	}
	wg.Wait()
	total := 0
	for _, s := range sessions {
		msgs, err := stores[0].Messages(context.Background(), s, 0, 100000)
		if err != nil {
			t.Fatal(err)
		}
		for i, m := range msgs {
			if m.Seq != int64(i+1) || given[fmt.Sprintf("%s/%d", s, m.Seq)] != m.ClientID {
				t.Fatalf("session %s message %d: seq %d client %s", s, i, m.Seq, m.ClientID)
			}
		}
		total += len(msgs)
	}
	if total != replicas*writers*per {
		t.Fatalf("stored %d messages, want %d", total, replicas*writers*per)
	}
}

// TestMySQLReplicasEnterOneRoom checks the database, not one process, keeps a room to
// one chat in progress: stores with separate pools enter the same room at once.
func TestMySQLReplicasEnterOneRoom(t *testing.T) {
	stores := []*DB{openTestMySQL(t), openTestMySQL(t), openTestMySQL(t)}
	room := "replicas-" + chat.NewSessionID()[:8]
	var mu sync.Mutex
	sessions, roles := map[string]bool{}, map[chat.Role]int{}
	var wg sync.WaitGroup
	for i := range 30 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, role, err := stores[i%3].Enter(context.Background(), room, fmt.Sprintf("p%d@example.com", i), chat.Now())
			mu.Lock()
			defer mu.Unlock()
			switch {
			case chat.IsCode(err, chat.ERoomFull):
				roles[chat.RoleNone]++
			case err != nil:
				t.Errorf("Enter: %v", err)
			default:
				sessions[s.ID] = true
				roles[role]++
			}
		}()
	}
	wg.Wait()
	if len(sessions) != 1 || roles[chat.RoleHost] != 1 || roles[chat.RoleParticipant] != 1 || roles[chat.RoleNone] != 28 {
		t.Fatalf("sessions %d roles %v; want 1 session, 1 host, 1 participant, 28 refused", len(sessions), roles)
	}
}

// TestOpenMySQLRequiresMigrate checks OpenMySQL refuses an unmigrated database with an
// error telling the operator what to run, and works once MigrateMySQL ran.
func TestOpenMySQLRequiresMigrate(t *testing.T) {
	cfg, err := mysql.ParseDSN(testMySQLDSN(t))
	if err != nil {
		t.Fatal(err)
	}
	admin, err := openMySQL(context.Background(), cfg.FormatDSN(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.db.Close()
	cfg.DBName += "_empty"
	if _, err := admin.db.Exec("CREATE DATABASE " + cfg.DBName); err != nil {
		t.Fatal(err)
	}
	defer admin.db.Exec("DROP DATABASE " + cfg.DBName)

	_, err = OpenMySQL(context.Background(), cfg.FormatDSN(), nil)
	if err == nil || !strings.Contains(err.Error(), "parley migrate") {
		t.Fatalf("OpenMySQL on an empty database = %v; want an error naming `parley migrate`", err)
	}
	for range 2 { // a second migrate is harmless
		if err := MigrateMySQL(context.Background(), cfg.FormatDSN(), nil); err != nil {
			t.Fatal(err)
		}
	}
	db, err := OpenMySQL(context.Background(), cfg.FormatDSN(), nil)
	if err != nil {
		t.Fatal(err)
	}
	db.Close()
}

// TestOpenMySQLForcesUTC checks the DSN's own loc and parseTime are overridden.
func TestOpenMySQLForcesUTC(t *testing.T) {
	cfg, err := mysql.ParseDSN(testMySQLDSN(t))
	if err != nil {
		t.Fatal(err)
	}
	dsn := cfg.FormatDSN()
	if strings.Contains(dsn, "?") {
		dsn += "&parseTime=false&loc=Local"
	} else {
		dsn += "?parseTime=false&loc=Local"
	}
	db, err := OpenMySQL(context.Background(), dsn, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	want := chat.Now()
	s, _, err := db.Enter(context.Background(), "utc-"+chat.NewSessionID()[:8], "a@example.com", want)
	if err != nil {
		t.Fatal(err)
	}
	got, err := db.Session(context.Background(), s.ID)
	if err != nil {
		t.Fatal(err)
	}
	if !got.InitiatedAt.Equal(want) || got.InitiatedAt.Location() != time.UTC {
		t.Fatalf("InitiatedAt = %v, want %v in UTC", got.InitiatedAt, want)
	}
}
