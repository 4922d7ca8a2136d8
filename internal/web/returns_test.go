package web

import (
	"context"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"testing"

	"parley/internal/chat"
	"parley/internal/fileblob"
	"parley/internal/outbox"
	"parley/internal/transcript"
)

func TestSafeNext(t *testing.T) {
	id := chat.NewSessionID()
	for in, want := range map[string]string{
		"/transcripts/" + id:             "/transcripts/" + id,
		"/rooms/demo-2":                  "/rooms/demo-2",
		"/history":                       "/history",
		"/history?email=a%40example.org": "/history?email=a%40example.org",
		"":                               "",
		"//evil.example/x":               "",
		"https://evil.example/":          "",
		"/\\evil.example":                "",
		"/rooms/../signout":              "",
		"/rooms/bad room":                "",
		"/transcripts/NOTHEX":            "",
		"/static/room.js":                "",
		"/signin?next=/rooms/x":          "",
		"/rooms/x#frag":                  "",
		"javascript:alert(1)":            "",
		"/rooms/x\r\nSet-Cookie: a=b":    "",
	} {
		if got := safeNext(in); got != want {
			t.Errorf("safeNext(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestSignedOutTranscriptLinkReturns: the transcript link from the email, opened in a
// browser that is not signed in, leads to the sign-in page, and after the emailed
// link is followed, back to the transcript, which downloads.
func TestSignedOutTranscriptLinkReturns(t *testing.T) {
	e := newSecEnv(t, Config{})
	ctx := context.Background()
	arch, err := fileblob.Open(filepath.Join(t.TempDir(), "archive"))
	if err != nil {
		t.Fatal(err)
	}
	e.srv.archive, e.srv.people = arch, e.store
	sess, _, err := e.store.Enter(ctx, "csv", "host@example.org", chat.Now())
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.store.Enter(ctx, "csv", "guest@example.org", chat.Now()); err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.store.Append(ctx, chat.Message{SessionID: sess.ID, ClientID: "c1", From: "host@example.org",
		To: "guest@example.org", Room: "csv", Kind: chat.KindChat, Text: "the plan, in writing"}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.store.End(ctx, sess.ID, "host@example.org", chat.Now()); err != nil {
		t.Fatal(err)
	}
	exportNow(t, e.store, arch, sess.ID)

	path := "/transcripts/" + sess.ID
	res, _ := e.request(http.MethodGet, path, nil, nil)
	signin := res.Header.Get("Location")
	if res.StatusCode != http.StatusSeeOther || signin != "/signin?next="+url.QueryEscape(path) {
		t.Fatalf("signed-out transcript link: %d to %q, want the sign-in page", res.StatusCode, signin)
	}
	res, body := e.request(http.MethodGet, signin, nil, nil)
	if res.StatusCode != http.StatusOK {
		t.Fatalf("sign-in page: %d", res.StatusCode)
	}
	mustContain(t, body, "Sign in to download the transcript", `name="next" value="`+path+`"`)
	res, body = e.request(http.MethodPost, "/signin/email", url.Values{"email": {"Guest@Example.org"}, "next": {path}, "tz": {"Europe/Paris"}}, nil)
	if res.StatusCode != http.StatusOK {
		t.Fatalf("asking for a link: %d\n%s", res.StatusCode, body)
	}
	mustContain(t, body, "Check your email", "download the transcript")
	token := e.lastLink("guest@example.org")
	list := e.mails()
	m, err := outbox.Read(e.outbox, list[0].Name)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(m.Text, "/signin/"+token+"?") || !strings.Contains(m.Text, "next="+url.QueryEscape(path)) {
		t.Fatalf("the link does not return to the transcript:\n%s", m.Text)
	}
	res, body = e.request(http.MethodGet, "/signin/"+token+"?next="+url.QueryEscape(path)+"&email=guest%40example.org", nil, nil)
	mustContain(t, body, `name="next" value="`+path+`"`)
	res, _ = e.request(http.MethodPost, "/signin", url.Values{"token": {token}, "next": {path}, "tz": {"Europe/Paris"}}, nil)
	if res.StatusCode != http.StatusSeeOther || res.Header.Get("Location") != path {
		t.Fatalf("after the link: %d to %q, want %s", res.StatusCode, res.Header.Get("Location"), path)
	}
	cookie := sessionCookie(t, res)
	res, body = e.request(http.MethodGet, path, nil, nil, cookie)
	if res.StatusCode != http.StatusOK || !strings.HasPrefix(body, transcript.BOM+"seq,") || !strings.Contains(body, "the plan, in writing") {
		t.Fatalf("transcript after sign-in: %d\n%s", res.StatusCode, body)
	}
	if z, _ := e.store.TimeZone(ctx, "guest@example.org"); z != "Europe/Paris" {
		t.Errorf("zone stored at sign-in %q, want Europe/Paris", z)
	}

	// The link is used up: the answer says so in plain words, keeps the address and
	// where it led, and offers a new link.
	res, body = e.request(http.MethodPost, "/signin", url.Values{"token": {token}, "next": {path}, "email": {"guest@example.org"}}, nil)
	if res.StatusCode != http.StatusNotFound || len(res.Cookies()) != 0 {
		t.Fatalf("used link: %d, cookies %v", res.StatusCode, res.Cookies())
	}
	mustContain(t, body, "expired or was already used", `value="guest@example.org"`, `name="next" value="`+path+`"`, "Send me a new link")
	mustNotContain(t, body, "Not Found")
}

// TestSignInNextIsLocalOnly: a return path elsewhere is dropped, never followed.
func TestSignInNextIsLocalOnly(t *testing.T) {
	e := newSecEnv(t, Config{Auth: AuthTrust})
	res, _ := e.request(http.MethodPost, "/signin/email", url.Values{"email": {"a@example.org"}, "next": {"//evil.example/"}}, nil)
	if res.StatusCode != http.StatusSeeOther || res.Header.Get("Location") != "/history" {
		t.Fatalf("sign-in with a foreign next: %d to %q, want /history", res.StatusCode, res.Header.Get("Location"))
	}
	res, body := e.request(http.MethodGet, "/signin?next=https%3A%2F%2Fevil.example%2F", nil, nil)
	if res.StatusCode != http.StatusOK || strings.Contains(body, "evil.example") {
		t.Fatalf("sign-in page echoes a foreign next: %d\n%s", res.StatusCode, body)
	}
}

// TestUsedJoinLinkKeepsRoom: a used link from the join form offers a new link to the
// same room for the same address.
func TestUsedJoinLinkKeepsRoom(t *testing.T) {
	e := newSecEnv(t, Config{})
	e.signIn("keep-me", "ann@example.org")
	token := e.lastLink("ann@example.org")
	_, body := e.request(http.MethodGet, "/signin/"+token+"?room=keep-me&email=ann%40example.org", nil, nil)
	mustContain(t, body, `name="room" value="keep-me"`, `name="email" value="ann@example.org"`)
	res, body := e.request(http.MethodPost, "/signin", url.Values{"token": {token}, "room": {"keep-me"}, "email": {"ann@example.org"}}, nil)
	if res.StatusCode != http.StatusNotFound {
		t.Fatalf("used link: %d", res.StatusCode)
	}
	mustContain(t, body, `action="/join"`, `name="room" value="keep-me"`, `value="ann@example.org"`, "Send me a new link to the room keep-me")
}

// TestEndedRoomIsReadOnly: after a chat ended, visiting its room shows that chat
// read-only with "Start a new chat in this room" and "History", and starts nothing;
// the join button starts a new chat. A room never used shows an empty room, also
// without starting a chat, and history has no phantom rows.
func TestEndedRoomIsReadOnly(t *testing.T) {
	e := newPagesEnv(t)
	c := newPagesClient(t, e.srv)
	ctx := context.Background()
	ann := c.join("done", "ann@example.org")
	sess, _, err := e.store.Enter(ctx, "done", "ann@example.org", chat.Now())
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.store.Enter(ctx, "done", "bob@example.org", chat.Now()); err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.store.Append(ctx, chat.Message{SessionID: sess.ID, ClientID: "c1", From: "ann@example.org",
		To: "bob@example.org", Room: "done", Kind: chat.KindChat, Text: "<b>see you</b>"}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.store.End(ctx, sess.ID, "bob@example.org", chat.Now()); err != nil {
		t.Fatal(err)
	}
	for range 2 { // a reload starts nothing either
		res, body := c.get("/rooms/done", ann)
		if res.StatusCode != http.StatusOK {
			t.Fatalf("ended room: %d", res.StatusCode)
		}
		mustContain(t, body, "bob@example.org ended this chat.", "&lt;b&gt;see you&lt;/b&gt;",
			`id="new-chat"`, "Start a new chat in this room", `href="/history"`)
		mustNotContain(t, body, "room.js", `id="composer"`)
	}
	if _, err := e.store.InProgress(ctx, "done"); !chat.IsCode(err, chat.ENotFound) {
		t.Fatalf("visiting the ended room started a chat (%v)", err)
	}
	res, body := c.get("/rooms/never-used", ann)
	mustContain(t, body, "Start a chat in this room")
	if _, err := e.store.InProgress(ctx, "never-used"); res.StatusCode != http.StatusOK || !chat.IsCode(err, chat.ENotFound) {
		t.Fatalf("visiting an unused room: %d, chat %v", res.StatusCode, err)
	}
	_, body = c.get("/history", ann)
	mustNotContain(t, body, "never-used", "nobody")

	res, _ = c.post("/join", url.Values{"room": {"done"}, "email": {"ann@example.org"}}, ann)
	if res.StatusCode != http.StatusSeeOther {
		t.Fatalf("start a new chat: %d", res.StatusCode)
	}
	ann = sessionCookie(t, res)
	fresh, err := e.store.InProgress(ctx, "done")
	if err != nil || fresh.ID == sess.ID || fresh.HostEmail != "ann@example.org" {
		t.Fatalf("new chat %+v (%v)", fresh, err)
	}
	_, body = c.get("/rooms/done", ann)
	mustContain(t, body, "room.js", `id="composer"`)
}

// TestNobodyJoinedHistory: a chat ended before anyone joined says so in history, with
// no transcript to download (none was mailed).
func TestNobodyJoinedHistory(t *testing.T) {
	e := newPagesEnv(t)
	c := newPagesClient(t, e.srv)
	ann := c.join("alone", "ann@example.org")
	ctx := context.Background()
	sess, err := e.store.InProgress(ctx, "alone")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.store.End(ctx, sess.ID, "ann@example.org", chat.Now()); err != nil {
		t.Fatal(err)
	}
	_, body := c.get("/history", ann)
	mustContain(t, body, "Ended before anyone joined")
	mustNotContain(t, body, "Download CSV", "In progress")
	_, body = c.get("/rooms/alone", ann)
	mustContain(t, body, "Ended before anyone joined.")
}
