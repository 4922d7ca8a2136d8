package web

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"parley/internal/chat"
	"parley/internal/fileblob"
	"parley/internal/membus"
	"parley/internal/memqueue"
	"parley/internal/outbox"
	"parley/internal/sqlstore"
	"parley/internal/transcript"
)

// pagesEnv is a Parley server on real embedded backends (SQLite in a temporary
// folder, the in-process bus and queue, the local archive and outbox), wired as
// `parley serve` runs with nothing installed.
type pagesEnv struct {
	srv   *httptest.Server
	store *sqlstore.DB
}

// newPagesEnv starts Parley's handler on a local test server.
func newPagesEnv(t *testing.T) *pagesEnv { return newPagesEnvAt(t, "") }

// newPagesEnvAt is newPagesEnv for a server that people reach at publicURL (a proxy
// in front of it); "" means the test server's own URL.
func newPagesEnvAt(t *testing.T, publicURL string) *pagesEnv {
	t.Helper()
	// The join form signs in; signin_test.go covers links.
	site := newTestSite(t, Config{PublicURL: publicURL, Auth: AuthTrust}, func(d *Deps, site *testSite) {
		d.Queue = newTestQueue(t, site.store, site.bus, site.dir, site.public)
		d.People = site.store
	})
	return &pagesEnv{srv: site.ts, store: site.store}
}

// newTestQueue starts the in-process queue running the real transcript export into a
// local archive and outbox under dir.
func newTestQueue(t *testing.T, store *sqlstore.DB, bus *membus.Bus, dir, publicURL string) *memqueue.Queue {
	t.Helper()
	archive, err := fileblob.Open(filepath.Join(dir, "archive"))
	if err != nil {
		t.Fatal(err)
	}
	mailer, err := outbox.New(outbox.Options{Dir: filepath.Join(dir, "outbox")})
	if err != nil {
		t.Fatal(err)
	}
	exporter, err := transcript.NewExporter(transcript.Options{Sessions: store, Messages: store,
		Archive: archive, Mailer: mailer, Broker: bus, People: store, PublicURL: publicURL})
	if err != nil {
		t.Fatal(err)
	}
	queue, err := memqueue.New(exporter, memqueue.Options{PurgeSchedule: "-"})
	if err != nil {
		t.Fatal(err)
	}
	queue.Start(context.Background())
	t.Cleanup(func() { _ = queue.Close() })
	return queue
}

// newPagesTestServer is newPagesEnv for tests that need only the HTTP server.
func newPagesTestServer(t *testing.T) *httptest.Server { return newPagesEnv(t).srv }

// seedChat enters host (and participant, if any) in room, appends texts from the host
// and returns the session.
func (e *pagesEnv) seedChat(t *testing.T, room, host, participant string, texts ...string) *chat.Session {
	t.Helper()
	ctx := context.Background()
	sess, _, err := e.store.Enter(ctx, room, host, chat.Now())
	if err != nil {
		t.Fatal(err)
	}
	if participant != "" {
		if sess, _, err = e.store.Enter(ctx, room, participant, chat.Now()); err != nil {
			t.Fatal(err)
		}
	}
	for i, text := range texts {
		m := chat.Message{SessionID: sess.ID, ClientID: fmt.Sprintf("c-%d", i), From: host, To: participant,
			Room: room, Kind: chat.KindChat, Text: text}
		if _, _, err := e.store.Append(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	return sess
}

// finish ends a session and, when complete is set, archives and completes it with
// mailFailure recorded for the host.
func (e *pagesEnv) finish(t *testing.T, sess *chat.Session, by string, complete bool, mailFailure string) {
	t.Helper()
	ctx := context.Background()
	if _, err := e.store.End(ctx, sess.ID, by, chat.Now()); err != nil {
		t.Fatal(err)
	}
	if !complete {
		return
	}
	obj := chat.ArchiveObject{Key: chat.ArchiveKey(sess.ID), Size: 10, SHA256: "00"}
	if err := e.store.RecordArchive(ctx, sess.ID, obj, 3); err != nil {
		t.Fatal(err)
	}
	if err := e.store.RecordMail(ctx, sess.ID, chat.RoleHost, time.Time{}, mailFailure); err != nil {
		t.Fatal(err)
	}
	if err := e.store.Complete(ctx, sess.ID, "/transcripts/"+sess.ID, chat.Now()); err != nil {
		t.Fatal(err)
	}
}

func TestHistoryPage(t *testing.T) {
	env := newPagesEnv(t)
	c := newPagesClient(t, env.srv)
	live := env.seedChat(t, "alpha", "ann@example.org", "bob@example.org", "hi", "hello")
	ending := env.seedChat(t, "beta", "ann@example.org", "")
	env.finish(t, ending, "ann@example.org", false, "")
	done := env.seedChat(t, "gamma", "ann@example.org", "carl@example.org", "a", "b", "c")
	env.finish(t, done, "carl@example.org", true, "")
	failed := env.seedChat(t, "delta", "ann@example.org", "dan@example.org")
	env.finish(t, failed, "dan@example.org", true, "550 <script>alert(1)</script>")
	env.seedChat(t, "elsewhere", "eve@example.org", "")
	annCookie := c.join("alpha", "ann@example.org")

	tests := []struct {
		name   string
		path   string
		cookie *http.Cookie
		status int
		wants  []string
		bad    []string
	}{
		{name: "OK", path: "/history?email=Ann@Example.org", status: http.StatusOK, wants: []string{
			"4 chats of <strong>ann@example.org</strong>",
			">alpha<", "bob@example.org", "In progress", `<td data-label="Messages" class="num">2</td>`,
			">beta<", "Ended before anyone joined", "nobody joined",
			">gamma<", "carl@example.org", "Completed", "Ended by carl@example.org.", `href="/transcripts/` + done.ID + `"`,
			">delta<", "Mail failed", "550 &lt;script&gt;alert(1)&lt;/script&gt;", `href="/transcripts/` + failed.ID + `"`,
			"host",
		}, bad: []string{
			"elsewhere", "<script>alert", `href="/transcripts/` + live.ID, `href="/transcripts/` + ending.ID,
			`href="/rooms/alpha"`, // the room link is for the person themself
		}},
		{name: "OwnWhenSignedIn", path: "/history", cookie: annCookie, status: http.StatusOK, wants: []string{
			"4 chats of <strong>ann@example.org</strong>", `href="/rooms/alpha"`,
		}},
		{name: "OtherPersonsChats", path: "/history?email=carl@example.org", cookie: annCookie, status: http.StatusOK, wants: []string{
			"1 chat of <strong>carl@example.org</strong>", ">gamma<", "participant",
		}, bad: []string{">alpha<"}},
		{name: "NoChats", path: "/history?email=nobody@example.org", status: http.StatusOK, wants: []string{
			"No chats found for <strong>nobody@example.org</strong>",
		}},
		{name: "EmptyNotSignedIn", path: "/history", status: http.StatusOK, wants: []string{
			"Enter an email address to see the chats",
		}},
		{name: "ErrBadEmail", path: "/history?email=%3Cscript%3Ealert(1)%3C/script%3E", status: http.StatusBadRequest, wants: []string{
			"is not an email address", `value="&lt;script&gt;alert(1)&lt;/script&gt;"`,
		}, bad: []string{"<script>alert"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, body := c.get(tt.path, tt.cookie)
			if res.StatusCode != tt.status {
				t.Fatalf("status %d, want %d; body %s", res.StatusCode, tt.status, body)
			}
			mustContain(t, body, tt.wants...)
			mustNotContain(t, body, tt.bad...)
		})
	}
}
