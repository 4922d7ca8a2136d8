package web

import (
	"context"

	"log/slog"
	"net/http/httptest"
	"parley/internal/chat"
	"parley/internal/outbox"
	"parley/internal/transcript"
	"path/filepath"
	"testing"
	"time"

	"parley/internal/membus"
	"parley/internal/sqlstore"
)

// testSite is Parley's handler on real embedded backends (a SQLite file, the in-process
// bus and presence) behind an httptest server whose address is known before the
// handler is built, so the configuration can name it as the public URL.
type testSite struct {
	ts     *httptest.Server
	srv    *Server
	store  *sqlstore.DB
	bus    *membus.Bus
	dir    string // the site's data folder: the database, and whatever deps adds
	public string // the URL people reach it at
}

// newTestSite opens the store, calls deps to complete the dependencies (site.public is
// cfg.PublicURL, or the server's own URL when empty), and starts the server.
// Everything is closed when the test ends, in shutdown order: the server first, then
// what deps registered with t.Cleanup (queues), then the bus and the store.
func newTestSite(t *testing.T, cfg Config, deps func(d *Deps, site *testSite)) *testSite {
	t.Helper()
	site := &testSite{dir: t.TempDir(), bus: membus.New()}
	log := slog.New(slog.DiscardHandler)
	store, err := sqlstore.OpenSQLite(context.Background(), filepath.Join(site.dir, "parley.db"), log)
	if err != nil {
		t.Fatal(err)
	}
	site.store = store
	t.Cleanup(func() {
		_ = site.bus.Close()
		_ = store.Close()
	})
	site.ts = httptest.NewUnstartedServer(nil) // its listener, hence its URL, exists already
	if cfg.PublicURL == "" {
		cfg.PublicURL = "http://" + site.ts.Listener.Addr().String()
	}
	site.public = cfg.PublicURL
	d := Deps{Config: cfg, Sessions: store, Messages: store, Broker: site.bus,
		Presence: membus.NewPresence(), Logger: log}
	if deps != nil {
		deps(&d, site)
	}
	site.srv = NewServer(d)
	site.ts.Config.Handler = site.srv
	site.ts.Start()
	t.Cleanup(func() {
		site.ts.CloseClientConnections()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = site.srv.Shutdown(ctx)
		site.ts.Close()
	})
	return site
}

// exportNow runs the transcript export of the ended session into arch at once, mailing
// into a throwaway outbox, as the job queue would.
func exportNow(t *testing.T, store *sqlstore.DB, arch chat.Archive, session string) {
	t.Helper()
	mail, err := outbox.New(outbox.Options{Dir: filepath.Join(t.TempDir(), "mail")})
	if err != nil {
		t.Fatal(err)
	}
	x, err := transcript.NewExporter(transcript.Options{Sessions: store, Messages: store, Archive: arch, Mailer: mail})
	if err != nil {
		t.Fatal(err)
	}
	if err := x.Export(context.Background(), session); err != nil {
		t.Fatal(err)
	}
}
