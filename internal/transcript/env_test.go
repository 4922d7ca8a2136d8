package transcript_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"parley/internal/chat"
	"parley/internal/fileblob"
	"parley/internal/membus"
	"parley/internal/outbox"
	"parley/internal/sqlstore"
	"parley/internal/transcript"
)

// env is one Parley data folder with the embedded backends, as `parley serve` wires
// them: SQLite for sessions and messages, the local archive, the outbox, the in-process
// bus. Exporters built on it share those stores, like a restarted process would.
type env struct {
	dir     string
	db      *sqlstore.DB
	archive *fileblob.Archive
	outbox  *outbox.Outbox
	bus     *membus.Bus
	csvDir  string
}

const publicURL = "http://127.0.0.1:8080"

func newEnv(t testing.TB) *env {
	t.Helper()
	dir := t.TempDir()
	ctx := context.Background()
	db, err := sqlstore.OpenSQLite(ctx, filepath.Join(dir, "parley.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	arch, err := fileblob.Open(filepath.Join(dir, "archive"))
	if err != nil {
		t.Fatal(err)
	}
	out, err := outbox.New(outbox.Options{Dir: filepath.Join(dir, "outbox")})
	if err != nil {
		t.Fatal(err)
	}
	bus := membus.New()
	t.Cleanup(func() { _ = bus.Close() })
	return &env{dir: dir, db: db, archive: arch, outbox: out, bus: bus, csvDir: filepath.Join(dir, "CSV_FILES")}
}

// options returns exporter options on the env's stores, with mailer m (the outbox
// when nil).
func (e *env) options(m chat.Mailer) transcript.Options {
	if m == nil {
		m = e.outbox
	}
	return transcript.Options{
		Sessions: e.db, Messages: e.db, Archive: e.archive, Mailer: m, Broker: e.bus,
		PublicURL: publicURL, CSVDir: e.csvDir,
	}
}

func (e *env) exporter(tb testing.TB, o transcript.Options) *transcript.Exporter {
	tb.Helper()
	x, err := transcript.NewExporter(o)
	if err != nil {
		tb.Fatal(err)
	}
	return x
}

// chatSession starts a chat in room between host and participant ("" for none),
// stores n messages alternating between them and, if end, ends it.
func (e *env) chatSession(tb testing.TB, room, host, participant string, n int, end bool) *chat.Session {
	tb.Helper()
	ctx := context.Background()
	s, _, err := e.db.Enter(ctx, room, host, chat.Now())
	if err != nil {
		tb.Fatal(err)
	}
	if participant != "" {
		if s, _, err = e.db.Enter(ctx, room, participant, chat.Now()); err != nil {
			tb.Fatal(err)
		}
	}
	appendMessages(tb, e.db, s, 0, n)
	if end {
		if _, err := e.db.End(ctx, s.ID, host, chat.Now()); err != nil {
			tb.Fatal(err)
		}
	}
	got, err := e.db.Session(ctx, s.ID)
	if err != nil {
		tb.Fatal(err)
	}
	return got
}

// appendMessages stores messages from..from+n-1 of s, from several goroutines at once
// so the store's group commit batches them (seqs still come out 1, 2, 3…).
func appendMessages(tb testing.TB, store chat.MessageStore, s *chat.Session, from, n int) {
	tb.Helper()
	ctx := context.Background()
	const writers = 16
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := from + w; i < from+n; i += writers {
				sender, to := s.HostEmail, s.ParticipantEmail
				if i%2 == 1 && s.ParticipantEmail != "" {
					sender, to = to, sender
				}
				m := chat.Message{SessionID: s.ID, ClientID: fmt.Sprintf("m%d", i), From: sender, To: to,
					Room: s.Room, Kind: chat.KindChat, Text: fmt.Sprintf("message %d, with \"quotes\" and ünïcode", i)}
				if _, _, err := store.Append(ctx, m); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		tb.Fatal(err)
	}
}

// session reads a session back.
func (e *env) session(tb testing.TB, id string) *chat.Session {
	tb.Helper()
	s, err := e.db.Session(context.Background(), id)
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

// mails returns the outbox emails, oldest first.
func (e *env) mails(tb testing.TB) []*outbox.Email {
	tb.Helper()
	list, err := outbox.List(e.outbox.Dir(), 0)
	if err != nil {
		tb.Fatal(err)
	}
	out := make([]*outbox.Email, 0, len(list))
	for i := len(list) - 1; i >= 0; i-- {
		m, err := outbox.Read(e.outbox.Dir(), list[i].Name)
		if err != nil {
			tb.Fatal(err)
		}
		out = append(out, m)
	}
	return out
}

// archiveFiles lists the objects in the archive's transcripts folder.
func (e *env) archiveFiles(tb testing.TB) []string {
	tb.Helper()
	entries, err := os.ReadDir(filepath.Join(e.archive.Dir(), "transcripts"))
	if err != nil && !os.IsNotExist(err) {
		tb.Fatal(err)
	}
	var names []string
	for _, en := range entries {
		names = append(names, en.Name())
	}
	return names
}
