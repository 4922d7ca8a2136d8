package bench

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"parley/internal/membus"
	"parley/internal/metrics"
	"parley/internal/outbox"
	"parley/internal/sqlstore"
	"parley/internal/web"
)

// newParley starts Parley's real handler on the embedded backends (SQLite in a
// temporary folder, the in-process bus), as `parley serve` runs with nothing
// installed, with /metrics beside it and the per-connection rate limit lifted so the
// closed loop is not throttled.
func newParley(t *testing.T) string { return newParleyAuth(t, web.AuthTrust) }

// newParleyAuth is newParley with the given sign-in; with email-link sign-in it runs
// in development mode, sign-in emails kept in an outbox shown at /dev/mail.
func newParleyAuth(t *testing.T, auth string) string {
	t.Helper()
	ctx := context.Background()
	log := slog.New(slog.DiscardHandler)
	dir := t.TempDir()
	store, err := sqlstore.OpenSQLite(ctx, filepath.Join(dir, "parley.db"), log)
	if err != nil {
		t.Fatal(err)
	}
	mail, err := outbox.New(outbox.Options{Dir: filepath.Join(dir, "outbox"), From: "parley@localhost", Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	bus := membus.New()
	srv := httptest.NewUnstartedServer(nil)
	url := "http://" + srv.Listener.Addr().String()
	reg := prometheus.NewRegistry()
	s := web.NewServer(web.Deps{
		Config: web.Config{PublicURL: url, RatePerSec: 1e6, RateBurst: 1e6, Auth: auth,
			Dev: auth == web.AuthEmailLink, OutboxDir: filepath.Join(dir, "outbox")},
		Sessions: store, Messages: store, Broker: bus, Presence: membus.NewPresence(), Logger: log,
		Metrics: metrics.New(reg), Mailer: mail, SignIns: store,
	})
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", metrics.Handler(reg))
	mux.Handle("/", s)
	srv.Config.Handler = mux
	srv.Start()
	t.Cleanup(func() {
		srv.Close()
		sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		_ = s.Shutdown(sctx)
		_ = bus.Close()
		_ = store.Close()
	})
	return url
}

// TestChatSmoke is a 2-second closed loop of 5 rooms against the real server: it
// delivers, and loses or duplicates nothing.
func TestChatSmoke(t *testing.T) {
	o := DefaultOptions()
	o.URL, o.Rooms, o.Warmup, o.Duration, o.JSON, o.Quiet = newParley(t), 5, 500*time.Millisecond, 2*time.Second, false, true
	var out, errs bytes.Buffer
	res, err := runChat(context.Background(), o, "smoke", &errs)
	if err != nil {
		t.Fatalf("run: %v\n%s", err, errs.String())
	}
	_ = res.print(&out, false)
	t.Logf("\n%s", out.String())
	if res.Deliveries == 0 || res.Rooms != 5 {
		t.Errorf("rooms %d, deliveries %d", res.Rooms, res.Deliveries)
	}
	if err := res.integrityError(); err != nil {
		t.Error(err)
	}
	if res.Latency.Count == 0 {
		t.Error("no latency recorded")
	}
}

// TestChatSignsInThroughOutbox runs the closed loop against a server that signs people
// in by emailed link (the default) in development mode: every client follows its link
// from the outbox, like a developer would, and the run delivers and loses nothing.
func TestChatSignsInThroughOutbox(t *testing.T) {
	o := DefaultOptions()
	o.URL, o.Rooms, o.Warmup, o.Duration, o.JSON, o.Quiet = newParleyAuth(t, web.AuthEmailLink), 3, 200*time.Millisecond, time.Second, false, true
	var errs bytes.Buffer
	res, err := runChat(context.Background(), o, "outbox", &errs)
	if err != nil {
		t.Fatalf("run: %v\n%s", err, errs.String())
	}
	if res.Rooms != 3 || res.Deliveries == 0 {
		t.Fatalf("rooms %d, deliveries %d\n%s", res.Rooms, res.Deliveries, errs.String())
	}
	if err := res.integrityError(); err != nil {
		t.Error(err)
	}
}

// TestIdleSmoke holds a few connections, reads the server's memory from /metrics and
// runs the fresh chats beside them. The server shares this test's process, so the
// memory figures include the clients: only the mechanics are checked here.
func TestIdleSmoke(t *testing.T) {
	o := DefaultOptions()
	o.URL, o.Mode, o.Conns, o.IdleRooms, o.IdleChat, o.Settle, o.Quiet = newParley(t), ModeIdle, 20, 1, 500*time.Millisecond, 10*time.Millisecond, true
	var out, errs bytes.Buffer
	if err := Run(context.Background(), o, &out, &errs); err != nil {
		t.Fatalf("run: %v\n%s\n%s", err, out.String(), errs.String())
	}
	t.Logf("\n%s", out.String())
	if !bytes.Contains(out.Bytes(), []byte("held 20/20 connections")) || bytes.Contains(out.Bytes(), []byte("memory unknown")) {
		t.Errorf("output:\n%s", out.String())
	}
}
