package web

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"parley/internal/chat"
	"parley/internal/fileblob"
	"parley/internal/outbox"
	"parley/internal/sqlstore"
	"parley/internal/transcript"
)

// endEnv is a Parley server on the embedded end-of-chat backends: SQLite, the local
// archive, the outbox and a real Exporter.
type endEnv struct {
	srv      *httptest.Server
	client   *pagesClient
	store    *sqlstore.DB
	archive  *fileblob.Archive
	outbox   *outbox.Outbox
	exporter *transcript.Exporter
}

const endAdmin = "admin@example.com"

// redirectingArchive is the local archive with download links of its own, standing in
// for S3's presigned URLs.
type redirectingArchive struct{ *fileblob.Archive }

func (a redirectingArchive) URL(ctx context.Context, key, filename string, ttl time.Duration) (string, error) {
	return "https://archive.example/" + key + "?filename=" + filename, nil
}

func newEndEnv(t *testing.T, dev, redirect bool) *endEnv {
	t.Helper()
	e := &endEnv{}
	site := newTestSite(t, Config{Dev: dev, AdminEmails: []string{endAdmin}, Auth: AuthTrust}, func(d *Deps, site *testSite) {
		var err error
		if e.archive, err = fileblob.Open(filepath.Join(site.dir, "archive")); err != nil {
			t.Fatal(err)
		}
		if e.outbox, err = outbox.New(outbox.Options{Dir: filepath.Join(site.dir, "outbox")}); err != nil {
			t.Fatal(err)
		}
		d.Config.OutboxDir = e.outbox.Dir()
		d.Archive = e.archive
		if redirect {
			d.Archive = redirectingArchive{e.archive}
		}
		e.exporter, err = transcript.NewExporter(transcript.Options{Sessions: site.store, Messages: site.store,
			Archive: e.archive, Mailer: e.outbox, Broker: site.bus, PublicURL: site.public, Logger: d.Logger})
		if err != nil {
			t.Fatal(err)
		}
	})
	e.srv, e.store = site.ts, site.store
	e.client = newPagesClient(t, site.ts)
	return e
}

// chat has host and participant join room through the join form, stores texts and
// ends the chat; export runs the export job too. It returns the session and cookies.
func (e *endEnv) chat(t *testing.T, room string, export bool, texts ...string) (*chat.Session, *http.Cookie, *http.Cookie) {
	t.Helper()
	ctx := context.Background()
	hostCookie := e.client.join(room, "host@example.com") // signs in only
	guestCookie := e.client.join(room, "guest@example.com")
	var sess *chat.Session
	for _, email := range []string{"host@example.com", "guest@example.com"} {
		var err error
		if sess, _, err = e.store.Enter(ctx, room, email, chat.Now()); err != nil {
			t.Fatal(err)
		}
	}
	for i, text := range texts {
		m := chat.Message{SessionID: sess.ID, ClientID: fmt.Sprintf("c%d", i), From: sess.HostEmail,
			To: sess.ParticipantEmail, Room: room, Kind: chat.KindChat, Text: text}
		if _, _, err := e.store.Append(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := e.store.End(ctx, sess.ID, sess.HostEmail, chat.Now()); err != nil {
		t.Fatal(err)
	}
	if export {
		if err := e.exporter.Export(ctx, sess.ID); err != nil {
			t.Fatal(err)
		}
	}
	return sess, hostCookie, guestCookie
}

func TestTranscriptAccess(t *testing.T) {
	e := newEndEnv(t, false, false)
	sess, hostCookie, guestCookie := e.chat(t, "deal", true, "hello, world", "=SUM(1)")
	pending, pendingHost, _ := e.chat(t, "pending", false, "not exported yet")
	stranger := e.client.join("elsewhere", "stranger@example.com")
	admin := e.client.join("adminroom", endAdmin)
	path := "/transcripts/" + sess.ID
	_, unknownBody := e.client.get("/transcripts/"+chat.NewSessionID(), stranger)

	tests := []struct {
		name       string
		path       string
		cookie     *http.Cookie
		wantStatus int
		wantBody   string
	}{
		{"Host", path, hostCookie, http.StatusOK, "'=SUM(1)"},
		{"Participant", path, guestCookie, http.StatusOK, "hello"},
		{"Admin", path, admin, http.StatusOK, "hello"},
		{"Stranger", path, stranger, http.StatusNotFound, "There is no such transcript."},
		{"SignedOut", path, nil, http.StatusSeeOther, ""},
		{"Unknown", "/transcripts/" + chat.NewSessionID(), hostCookie, http.StatusNotFound, "There is no such transcript."},
		{"NotAnID", "/transcripts/..%2F..%2Fetc", hostCookie, http.StatusNotFound, ""},
		{"NotReady", "/transcripts/" + pending.ID, pendingHost, http.StatusNotFound, "not ready yet"},
		{"NotReadyStranger", "/transcripts/" + pending.ID, stranger, http.StatusNotFound, "There is no such transcript."},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res, body := e.client.get(tc.path, tc.cookie)
			if res.StatusCode != tc.wantStatus {
				t.Fatalf("status %d, want %d; body %s", res.StatusCode, tc.wantStatus, body)
			}
			if !strings.Contains(body, tc.wantBody) {
				t.Fatalf("body lacks %q:\n%s", tc.wantBody, body)
			}
			if tc.name == "Stranger" && body != unknownBody {
				t.Fatal("a stranger's answer differs from an unknown session's: existence leaks")
			}
			if tc.wantStatus != http.StatusOK {
				return
			}
			if ct := res.Header.Get("Content-Type"); ct != "text/csv; charset=utf-8" {
				t.Errorf("Content-Type %q", ct)
			}
			wantName := fmt.Sprintf(`attachment; filename=parley-deal-%s.csv`, sess.InitiatedAt.UTC().Format("2006-01-02"))
			if cd := res.Header.Get("Content-Disposition"); cd != wantName {
				t.Errorf("Content-Disposition %q, want %q", cd, wantName)
			}
			if res.ContentLength != int64(len(body)) || res.ContentLength <= 0 {
				t.Errorf("Content-Length %d for %d bytes", res.ContentLength, len(body))
			}
			if !strings.HasPrefix(body, transcript.BOM+strings.Join(transcript.Header, ",")+"\r\n") {
				t.Errorf("body does not start with the byte order mark and the header row:\n%s", body)
			}
		})
	}
}

func TestTranscriptAfterPurge(t *testing.T) {
	e := newEndEnv(t, false, false)
	sess, hostCookie, _ := e.chat(t, "purged", true, "kept in the archive")
	_, before := e.client.get("/transcripts/"+sess.ID, hostCookie)
	n, err := e.exporter.Purge(context.Background(), chat.Now())
	if err != nil || n != 1 {
		t.Fatalf("purge: %d, %v", n, err)
	}
	if msgs, _ := e.store.Messages(context.Background(), sess.ID, 0, 10); len(msgs) != 0 {
		t.Fatalf("%d messages left after purge", len(msgs))
	}
	res, after := e.client.get("/transcripts/"+sess.ID, hostCookie)
	if res.StatusCode != http.StatusOK || after != before {
		t.Fatalf("after purge: status %d, same body %v", res.StatusCode, after == before)
	}
}

func TestTranscriptRedirectsToArchiveLink(t *testing.T) {
	e := newEndEnv(t, false, true)
	sess, hostCookie, _ := e.chat(t, "s3", true, "hi")
	stranger := e.client.join("other", "stranger@example.com")
	res, _ := e.client.get("/transcripts/"+sess.ID, hostCookie)
	if res.StatusCode != http.StatusSeeOther || !strings.HasPrefix(res.Header.Get("Location"), "https://archive.example/transcripts/"+sess.ID) {
		t.Fatalf("status %d, Location %q", res.StatusCode, res.Header.Get("Location"))
	}
	if res, _ := e.client.get("/transcripts/"+sess.ID, stranger); res.StatusCode != http.StatusNotFound || res.Header.Get("Location") != "" {
		t.Fatalf("stranger: status %d, Location %q", res.StatusCode, res.Header.Get("Location"))
	}
}

func TestDevMail(t *testing.T) {
	e := newEndEnv(t, true, false)
	sess, _, _ := e.chat(t, "mailroom", true, "hi")
	res, body := e.client.get("/dev/mail", nil)
	if res.StatusCode != http.StatusOK {
		t.Fatalf("/dev/mail: %d", res.StatusCode)
	}
	mustContain(t, body, "host@example.com", "guest@example.com", "Your Parley chat in room mailroom — transcript")
	list, err := outbox.List(e.outbox.Dir(), 0)
	if err != nil || len(list) != 2 {
		t.Fatalf("outbox: %v, %v", list, err)
	}
	res, body = e.client.get("/dev/mail/"+list[0].Name, nil)
	if res.StatusCode != http.StatusOK {
		t.Fatalf("/dev/mail/%s: %d", list[0].Name, res.StatusCode)
	}
	link := e.srv.URL + "/transcripts/" + sess.ID
	mustContain(t, body, `<a href="`+link+`">`+link+`</a>`, "mailroom")

	for _, name := range []string{"nope.eml", "..%2F..%2Fparley.db", "20260101T000000.000000000Z-00000000.eml"} {
		if res, _ := e.client.get("/dev/mail/"+name, nil); res.StatusCode != http.StatusNotFound {
			t.Errorf("/dev/mail/%s: %d, want 404", name, res.StatusCode)
		}
	}
}

// TestDevMailJSON: programs read the outbox as JSON, filtered by recipient, each email
// with its text and the links it holds.
func TestDevMailJSON(t *testing.T) {
	e := newEndEnv(t, true, false)
	sess, _, _ := e.chat(t, "jsonroom", true, "hi")
	res, body := e.client.get("/dev/mail.json?to=Guest@example.com", nil)
	if res.StatusCode != http.StatusOK || res.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("/dev/mail.json: %d %s", res.StatusCode, res.Header.Get("Content-Type"))
	}
	var got struct {
		Mails []struct {
			Name, To, Subject, Text string
			Links                   []string
		}
	}
	if err := json.Unmarshal([]byte(body), &got); err != nil {
		t.Fatalf("decoding %q: %v", body, err)
	}
	if len(got.Mails) != 1 {
		t.Fatalf("want the guest's one email, got %+v", got.Mails)
	}
	m := got.Mails[0]
	link := e.srv.URL + "/transcripts/" + sess.ID
	if m.To != "guest@example.com" || !outbox.ValidName(m.Name) || !strings.Contains(m.Subject, "jsonroom") ||
		!strings.Contains(m.Text, link) || !slices.Contains(m.Links, link) {
		t.Errorf("email %+v, want to guest@example.com with link %s", m, link)
	}
	if _, body := e.client.get("/dev/mail.json?to=nobody@example.com", nil); strings.TrimSpace(body) != `{"mails":[]}` {
		t.Errorf("no email to the address: %s, want an empty list", body)
	}
}

func TestDevMailOnlyInDevMode(t *testing.T) {
	e := newEndEnv(t, false, false)
	for _, p := range []string{"/dev/mail", "/dev/mail.json", "/dev/mail/20260101T000000.000000000Z-00000000.eml"} {
		if res, _ := e.client.get(p, nil); res.StatusCode != http.StatusNotFound {
			t.Errorf("%s outside dev mode: %d, want 404", p, res.StatusCode)
		}
	}
}

func TestLinkify(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []textSpan
	}{
		{"Plain", "no links", []textSpan{{Text: "no links"}}},
		{"Link", "see http://x.test/a?b=1\nbye", []textSpan{{Text: "see "}, {Text: "http://x.test/a?b=1", Link: "http://x.test/a?b=1"}, {Text: "\nbye"}}},
		{"NotJavascript", "javascript:alert(1)", []textSpan{{Text: "javascript:alert(1)"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := linkify(tc.in)
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Fatalf("linkify(%q) = %+v, want %+v", tc.in, got, tc.want)
			}
		})
	}
}

func TestTranscriptResumesDownload(t *testing.T) {
	e := newEndEnv(t, false, false)
	sess, hostCookie, _ := e.chat(t, "resume", true, "hi")
	req, err := http.NewRequest(http.MethodGet, e.srv.URL+"/transcripts/"+sess.ID, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.AddCookie(hostCookie)
	req.Header.Set("Range", "bytes=7-16") // after the 3-byte BOM and "seq,"
	res, body := e.client.do(req)
	if res.StatusCode != http.StatusPartialContent || body != "message_id" {
		t.Fatalf("range request: status %d, body %q", res.StatusCode, body)
	}
}
