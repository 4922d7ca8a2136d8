package cli

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"parley/internal/chat"
	"parley/internal/sqlstore"
)

// endedChat stores, in the embedded database of dataDir, a chat of two people with two
// messages that the host has ended, as `parley serve` would leave it, and returns its id.
func endedChat(t *testing.T, dataDir string) string {
	t.Helper()
	ctx := context.Background()
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		t.Fatal(err)
	}
	db, err := sqlstore.OpenSQLite(ctx, filepath.Join(dataDir, "parley.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	now := chat.Now()
	sess, _, err := db.Enter(ctx, "export-room", "host@example.org", now)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := db.Enter(ctx, "export-room", "guest@example.org", now); err != nil {
		t.Fatal(err)
	}
	for i, text := range []string{"hello from the host", "and hello back"} {
		from, to := "host@example.org", "guest@example.org"
		if i == 1 {
			from, to = to, from
		}
		if _, _, err := db.Append(ctx, chat.Message{SessionID: sess.ID, ClientID: "c" + string(rune('0'+i)),
			From: from, To: to, Room: "export-room", Kind: chat.KindChat, Text: text, CreatedAt: now}); err != nil {
			t.Fatal(err)
		}
	}
	if ok, err := db.End(ctx, sess.ID, "host@example.org", now); err != nil || !ok {
		t.Fatalf("End = %v, %v", ok, err)
	}
	return sess.ID
}

// lastSeq reads how many messages the embedded database still holds for id.
func lastSeq(t *testing.T, dataDir, id string) int64 {
	t.Helper()
	db, err := sqlstore.OpenSQLite(context.Background(), filepath.Join(dataDir, "parley.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	n, err := db.LastSeq(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// plantTemp writes a file at path last modified age ago.
func plantTemp(t *testing.T, path string, age time.Duration) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte("half a transcript"), 0o640); err != nil {
		t.Fatal(err)
	}
	at := time.Now().Add(-age)
	if err := os.Chtimes(path, at, at); err != nil {
		t.Fatal(err)
	}
}

// TestExportAndPurgeCommands runs `parley export SESSION`, `parley purge --dry-run`
// and `parley purge` as an operator would, on the embedded backends.
func TestExportAndPurgeCommands(t *testing.T) {
	dataDir := t.TempDir()
	env := parleyEnv("PARLEY_DATA_DIR=" + dataDir)
	id := endedChat(t, dataDir)

	// Refusals name the problem.
	if _, stderr, err := runParley(t, env, "export"); err == nil || !strings.Contains(stderr, "usage: parley export SESSION") {
		t.Errorf("export without a session: %v %q", err, stderr)
	}
	if _, stderr, err := runParley(t, env, "export", "0123456789abcdef0123456789abcdef"); err == nil || !strings.Contains(stderr, "session 0123456789abcdef0123456789abcdef") {
		t.Errorf("export of an unknown session: %v %q", err, stderr)
	}

	stdout, stderr, err := runParley(t, env, "export", id)
	if err != nil {
		t.Fatalf("export: %v\n%s", err, stderr)
	}
	if !strings.Contains(stdout, "session "+id+": completed, 2 messages, archived as ") {
		t.Fatalf("export printed %q", stdout)
	}
	key := strings.Fields(strings.SplitAfter(stdout, "archived as ")[1])[0]
	archived, err := os.ReadFile(filepath.Join(dataDir, "archive", filepath.FromSlash(key)))
	if err != nil || !strings.Contains(string(archived), "hello from the host") || !strings.Contains(string(archived), "and hello back") {
		t.Fatalf("archived transcript %s: %v\n%s", key, err, archived)
	}
	if csv, err := os.ReadFile(filepath.Join(dataDir, "CSV_FILES", id+".csv")); err != nil || string(csv) != string(archived) {
		t.Fatalf("CSV_FILES copy: %v", err)
	}
	mails, _ := filepath.Glob(filepath.Join(dataDir, "outbox", "*.eml"))
	if len(mails) != 2 {
		t.Fatalf("%d emails in the outbox, want one per person", len(mails))
	}

	// A kill mid-write left temp files; the next command removes the stale ones only.
	staleArchive := filepath.Join(dataDir, "archive", "2026", ".tmp-111")
	staleCSV := filepath.Join(dataDir, "CSV_FILES", ".tmp-222")
	fresh := filepath.Join(dataDir, "CSV_FILES", ".tmp-333")
	plantTemp(t, staleArchive, 2*time.Minute)
	plantTemp(t, staleCSV, 2*time.Minute)
	plantTemp(t, fresh, 0)

	stdout, stderr, err = runParley(t, env, "purge", "--dry-run")
	if err != nil {
		t.Fatalf("purge --dry-run: %v\n%s", err, stderr)
	}
	if !strings.Contains(stdout, id+"\troom export-room\twould purge") || !strings.Contains(stdout, "1 session(s) due") {
		t.Fatalf("purge --dry-run printed %q", stdout)
	}
	if n := lastSeq(t, dataDir, id); n != 2 {
		t.Fatalf("after a dry run the chat has %d messages, want its 2", n)
	}
	for path, wantGone := range map[string]bool{staleArchive: true, staleCSV: true, fresh: false} {
		if _, err := os.Stat(path); os.IsNotExist(err) != wantGone {
			t.Errorf("%s: removed %v, want %v", path, os.IsNotExist(err), wantGone)
		}
	}

	stdout, stderr, err = runParley(t, env, "purge")
	if err != nil || !strings.Contains(stdout, "purged 1, kept 0") {
		t.Fatalf("purge: %v %q\n%s", err, stdout, stderr)
	}
	if n := lastSeq(t, dataDir, id); n != 0 {
		t.Fatalf("after purge the chat still has %d messages", n)
	}
	if stdout, _, _ := runParley(t, env, "purge", "--dry-run"); !strings.Contains(stdout, "0 session(s) due") {
		t.Fatalf("second dry run printed %q", stdout)
	}
}

// TestConfigThroughBinary: settings come from the environment and flags (a flag wins),
// bad values stop the command with a message naming the setting, and secrets never
// reach the logs.
func TestConfigThroughBinary(t *testing.T) {
	dataDir := t.TempDir()
	t.Run("BadValuesRefused", func(t *testing.T) {
		for _, tc := range []struct {
			vars []string
			args []string
			want string
		}{
			{[]string{"PARLEY_RATE=fast"}, nil, "PARLEY_RATE: want a number"},
			{[]string{"PARLEY_MAX_CONNS=0"}, nil, "PARLEY_MAX_CONNS 0"},
			{nil, []string{"--max-conns", "0"}, "PARLEY_MAX_CONNS 0"},
			{[]string{"PARLEY_BODY_TIMEOUT=soon"}, nil, "PARLEY_BODY_TIMEOUT: want a duration"},
			{[]string{"PARLEY_TRUSTED_PROXIES=10.0.0.1,proxy.internal"}, nil, `trusted proxy "proxy.internal" is not an IP address or CIDR prefix`},
			{[]string{"PARLEY_AUTH=none"}, nil, "PARLEY_AUTH"},
			{[]string{"PARLEY_TZ=Mars/Olympus"}, nil, "PARLEY_TZ"},
			{[]string{"PARLEY_COOKIE_KEY=abcd"}, nil, "PARLEY_COOKIE_KEY must be at least 32 bytes"},
		} {
			_, stderr, err := runParley(t, parleyEnv(append(tc.vars, "PARLEY_DATA_DIR="+dataDir, "PARLEY_ADDR=127.0.0.1:0")...), append([]string{"serve"}, tc.args...)...)
			if err == nil || !strings.Contains(stderr, tc.want) {
				t.Errorf("%v %v: %v, stderr %q; want it refused naming %q", tc.vars, tc.args, err, stderr, tc.want)
			}
		}
	})
	t.Run("FlagWinsAndSecretsMasked", func(t *testing.T) {
		key := strings.Repeat("5e", 32)
		s := serve(t, "PARLEY_LOG_LEVEL=debug", "PARLEY_COOKIE_KEY="+key,
			"PARLEY_SMTP_URL=smtp://parley:sesame-password@127.0.0.1:1/?tls=none", "PARLEY_MAX_CONNS=77")
		logs := s.logs.String()
		for _, want := range []string{"maxconns=77", "bodytimeout=30s", "cookiekey=*****", "auth=trust"} {
			if !strings.Contains(logs, want) {
				t.Errorf("start log lacks %q:\n%s", want, logs)
			}
		}
		for _, secret := range []string{key, "sesame-password"} {
			if strings.Contains(logs, secret) {
				t.Errorf("start log shows a secret %q:\n%s", secret, logs)
			}
		}
		// A MariaDB DSN that cannot be reached is named without its password.
		_, stderr, err := runParley(t, parleyEnv("PARLEY_DATA_DIR="+dataDir, "PARLEY_MYSQL_DSN=parley:hunter2-secret@tcp(127.0.0.1:1)/parley"), "purge", "--dry-run")
		if err == nil || strings.Contains(stderr, "hunter2-secret") || !strings.Contains(stderr, "127.0.0.1:1") {
			t.Errorf("unreachable MariaDB: %v, stderr %q", err, stderr)
		}
		// Flags win over variables.
		_, stderr, _ = runParley(t, parleyEnv("PARLEY_DATA_DIR="+dataDir, "PARLEY_MAX_CONNS=5"), "serve", "--max-conns", "0")
		if !strings.Contains(stderr, "PARLEY_MAX_CONNS 0") {
			t.Errorf("--max-conns 0 over PARLEY_MAX_CONNS=5: %q", stderr)
		}
	})
}
