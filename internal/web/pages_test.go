package web

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
)

// pagesClient talks to a test server without following redirects, so tests see the
// 303s and cookies the pages send.
type pagesClient struct {
	t   *testing.T
	srv *httptest.Server
}

func newPagesClient(t *testing.T, srv *httptest.Server) *pagesClient {
	return &pagesClient{t: t, srv: srv}
}

// do sends req and returns the response with its body read.
func (c *pagesClient) do(req *http.Request) (*http.Response, string) {
	c.t.Helper()
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	res, err := client.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		c.t.Fatal(err)
	}
	return res, string(b)
}

// get fetches path, with the cookie when one is given.
func (c *pagesClient) get(path string, cookie *http.Cookie) (*http.Response, string) {
	c.t.Helper()
	req, err := http.NewRequest(http.MethodGet, c.srv.URL+path, nil)
	if err != nil {
		c.t.Fatal(err)
	}
	if cookie != nil {
		req.AddCookie(cookie)
	}
	return c.do(req)
}

// post sends a form to path as a same-origin browser would.
func (c *pagesClient) post(path string, form url.Values, cookie *http.Cookie) (*http.Response, string) {
	c.t.Helper()
	req, err := http.NewRequest(http.MethodPost, c.srv.URL+path, strings.NewReader(form.Encode()))
	if err != nil {
		c.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	if cookie != nil {
		req.AddCookie(cookie)
	}
	return c.do(req)
}

// join posts the join form and returns the session cookie it set.
func (c *pagesClient) join(room, email string) *http.Cookie {
	c.t.Helper()
	res, body := c.post("/join", url.Values{"room": {room}, "email": {email}}, nil)
	if res.StatusCode != http.StatusSeeOther {
		c.t.Fatalf("join %s as %s: status %d, body %s", room, email, res.StatusCode, body)
	}
	for _, ck := range res.Cookies() {
		if ck.Name == cookieName && ck.Value != "" {
			return ck
		}
	}
	c.t.Fatalf("join %s as %s set no session cookie", room, email)
	return nil
}

// mustContain fails unless body contains every one of wants.
func mustContain(t *testing.T, body string, wants ...string) {
	t.Helper()
	for _, w := range wants {
		if !strings.Contains(body, w) {
			t.Errorf("body does not contain %q:\n%s", w, body)
		}
	}
}

// mustNotContain fails if body contains any of bad.
func mustNotContain(t *testing.T, body string, bad ...string) {
	t.Helper()
	for _, b := range bad {
		if strings.Contains(body, b) {
			t.Errorf("body contains %q:\n%s", b, body)
		}
	}
}

func TestHomePage(t *testing.T) {
	c := newPagesClient(t, newPagesTestServer(t))
	tests := []struct {
		name  string
		path  string
		wants []string
		bad   []string
	}{
		{"OK", "/", []string{`action="/join"`, `action="/history"`, "Parley is a private live chat"}, nil},
		{"RoomPrefilled", "/?room=team-7", []string{`name="room" value="team-7"`}, nil},
		{"BadRoomNotEchoed", "/?room=%3Cscript%3Ealert(1)%3C/script%3E", []string{`name="room" value=""`}, []string{"<script>alert", "&lt;script"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, body := c.get(tt.path, nil)
			if res.StatusCode != http.StatusOK {
				t.Fatalf("status %d", res.StatusCode)
			}
			if ct := res.Header.Get("Content-Type"); ct != "text/html; charset=utf-8" {
				t.Errorf("Content-Type %q", ct)
			}
			mustContain(t, body, tt.wants...)
			mustNotContain(t, body, tt.bad...)
		})
	}
}

func TestHomePageSignedInPrefillsEmail(t *testing.T) {
	c := newPagesClient(t, newPagesTestServer(t))
	cookie := c.join("lobby", "Ann@Example.org")
	_, body := c.get("/", cookie)
	mustContain(t, body, `name="email" type="email" value="ann@example.org"`, `action="/signout"`)
}

func TestJoin(t *testing.T) {
	c := newPagesClient(t, newPagesTestServer(t))
	tests := []struct {
		name     string
		room     string
		email    string
		status   int
		location string
		wants    []string
		bad      []string
	}{
		{name: "OK", room: "team-7", email: " Bob@Example.ORG ", status: http.StatusSeeOther, location: "/rooms/team-7"},
		{name: "ErrEmptyRoom", room: "", email: "bob@example.org", status: http.StatusBadRequest,
			wants: []string{"Please enter a room name.", `value="bob@example.org"`}},
		{name: "ErrBadRoom", room: "<script>alert(1)</script>", email: "bob@example.org", status: http.StatusBadRequest,
			wants: []string{"may contain only letters", `value="&lt;script&gt;alert(1)&lt;/script&gt;"`},
			bad:   []string{"<script>alert(1)"}},
		{name: "ErrLongRoom", room: strings.Repeat("a", 65), email: "bob@example.org", status: http.StatusBadRequest,
			wants: []string{"at most 64 characters"}},
		{name: "ErrEmptyEmail", room: "team-7", email: "", status: http.StatusBadRequest,
			wants: []string{"Please enter your email address.", `value="team-7"`}},
		{name: "ErrBadEmail", room: "team-7", email: "<script>alert(1)</script>", status: http.StatusBadRequest,
			wants: []string{"is not an email address", "&lt;script&gt;alert(1)&lt;/script&gt;"},
			bad:   []string{"<script>alert(1)"}},
		{name: "ErrHeaderInjection", room: "team-7", email: "bob@example.org\r\nBcc: eve@example.org", status: http.StatusBadRequest,
			wants: []string{"cannot contain spaces or control characters"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, body := c.post("/join", url.Values{"room": {tt.room}, "email": {tt.email}}, nil)
			if res.StatusCode != tt.status {
				t.Fatalf("status %d, want %d; body %s", res.StatusCode, tt.status, body)
			}
			if got := res.Header.Get("Location"); got != tt.location {
				t.Errorf("Location %q, want %q", got, tt.location)
			}
			signedIn := false
			for _, ck := range res.Cookies() {
				if ck.Name == cookieName && ck.Value != "" {
					signedIn = true
					if !ck.HttpOnly || ck.SameSite != http.SameSiteLaxMode {
						t.Errorf("cookie not HttpOnly/SameSite=Lax: %+v", ck)
					}
				}
			}
			if signedIn != (tt.status == http.StatusSeeOther) {
				t.Errorf("signed in = %v with status %d", signedIn, res.StatusCode)
			}
			mustContain(t, body, tt.wants...)
			mustNotContain(t, body, tt.bad...)
		})
	}
}

func TestJoinSignsInNormalizedEmail(t *testing.T) {
	c := newPagesClient(t, newPagesTestServer(t))
	cookie := c.join("team-7", " Bob@Example.ORG ")
	res, body := c.get("/rooms/team-7", cookie)
	if res.StatusCode != http.StatusOK {
		t.Fatalf("status %d", res.StatusCode)
	}
	mustContain(t, body, `data-you="bob@example.org"`)
}

func TestJoinRefusesCrossSiteForm(t *testing.T) {
	c := newPagesClient(t, newPagesTestServer(t))
	req, _ := http.NewRequest(http.MethodPost, c.srv.URL+"/join", strings.NewReader("room=r&email=a%40example.org"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Sec-Fetch-Site", "cross-site")
	res, _ := c.do(req)
	if res.StatusCode != http.StatusForbidden {
		t.Fatalf("status %d, want 403", res.StatusCode)
	}
	if len(res.Cookies()) != 0 {
		t.Errorf("cross-site join set cookies: %v", res.Cookies())
	}
}

func TestRoomPage(t *testing.T) {
	c := newPagesClient(t, newPagesTestServer(t))
	cookie := c.join("team-7", "ann@example.org")
	tests := []struct {
		name     string
		path     string
		cookie   *http.Cookie
		status   int
		location string
		wants    []string
	}{
		{name: "OK", path: "/rooms/team-7", cookie: cookie, status: http.StatusOK, wants: []string{
			`data-room="team-7"`, `data-you="ann@example.org"`, `data-max-text="4000"`,
			`<script src="/static/room.js?v=`, `id="messages"`, `id="send"`, `id="bye"`, `id="end"`, `id="status"`,
		}},
		{name: "NoCookieSignsInFirst", path: "/rooms/team-7", status: http.StatusSeeOther, location: "/signin?next=%2Frooms%2Fteam-7"},
		{name: "BadCookieSignsInFirst", path: "/rooms/team-7", cookie: &http.Cookie{Name: cookieName, Value: "forged.value"},
			status: http.StatusSeeOther, location: "/signin?next=%2Frooms%2Fteam-7"},
		{name: "ErrBadRoom", path: "/rooms/" + url.PathEscape("bad room!"), cookie: cookie, status: http.StatusBadRequest,
			wants: []string{"may contain only letters"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, body := c.get(tt.path, tt.cookie)
			if res.StatusCode != tt.status {
				t.Fatalf("status %d, want %d; body %s", res.StatusCode, tt.status, body)
			}
			if got := res.Header.Get("Location"); got != tt.location {
				t.Errorf("Location %q, want %q", got, tt.location)
			}
			mustContain(t, body, tt.wants...)
			mustNotContain(t, body, "<script>") // no inline script, ever
		})
	}
}

func TestSignOut(t *testing.T) {
	c := newPagesClient(t, newPagesTestServer(t))
	cookie := c.join("team-7", "ann@example.org")
	res, _ := c.post("/signout", nil, cookie)
	if res.StatusCode != http.StatusSeeOther || res.Header.Get("Location") != "/" {
		t.Fatalf("status %d, Location %q", res.StatusCode, res.Header.Get("Location"))
	}
	cleared := false
	for _, ck := range res.Cookies() {
		cleared = cleared || ck.Name == cookieName && ck.MaxAge < 0
	}
	if !cleared {
		t.Errorf("sign-out did not clear the cookie: %v", res.Header.Values("Set-Cookie"))
	}
}

func TestSecurityHeaders(t *testing.T) {
	c := newPagesClient(t, newPagesTestServer(t))
	for _, path := range []string{"/", "/history", "/static/style.css", "/rooms/team-7", "/rooms/bad%20room"} {
		t.Run(path, func(t *testing.T) {
			res, _ := c.get(path, nil)
			csp := res.Header.Get("Content-Security-Policy")
			if !strings.Contains(csp, "default-src 'self'") {
				t.Errorf("Content-Security-Policy %q", csp)
			}
			if res.Header.Get("X-Content-Type-Options") != "nosniff" {
				t.Errorf("X-Content-Type-Options %q", res.Header.Get("X-Content-Type-Options"))
			}
		})
	}
}

func TestStatic(t *testing.T) {
	c := newPagesClient(t, newPagesTestServer(t))
	cssURL, err := site.staticURL("style.css")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name        string
		path        string
		status      int
		contentType string
		cache       string
	}{
		{"CSS", "/static/style.css", http.StatusOK, "text/css; charset=utf-8", "public, no-cache"},
		{"CSSFingerprinted", cssURL, http.StatusOK, "text/css; charset=utf-8", "public, max-age=31536000, immutable"},
		{"JS", "/static/room.js", http.StatusOK, "javascript", "public, no-cache"},
		{"SVG", "/static/favicon.svg", http.StatusOK, "image/svg+xml", "public, no-cache"},
		{"ErrNotFound", "/static/nope.js", http.StatusNotFound, "text/html; charset=utf-8", "no-store"},
		{"ErrDirectory", "/static/", http.StatusNotFound, "", ""},
		{"ErrEscapedTraversal", "/static/..%2ftemplates%2flayout.html", http.StatusNotFound, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, _ := c.get(tt.path, nil)
			if res.StatusCode != tt.status {
				t.Fatalf("status %d, want %d", res.StatusCode, tt.status)
			}
			if !strings.Contains(res.Header.Get("Content-Type"), tt.contentType) {
				t.Errorf("Content-Type %q, want %q", res.Header.Get("Content-Type"), tt.contentType)
			}
			if tt.cache != "" && res.Header.Get("Cache-Control") != tt.cache {
				t.Errorf("Cache-Control %q, want %q", res.Header.Get("Cache-Control"), tt.cache)
			}
		})
	}
}

func TestStaticRevalidatesByETag(t *testing.T) {
	c := newPagesClient(t, newPagesTestServer(t))
	res, _ := c.get("/static/style.css", nil)
	etag := res.Header.Get("ETag")
	if etag == "" {
		t.Fatal("no ETag")
	}
	req, _ := http.NewRequest(http.MethodGet, c.srv.URL+"/static/style.css", nil)
	req.Header.Set("If-None-Match", etag)
	res, _ = c.do(req)
	if res.StatusCode != http.StatusNotModified {
		t.Errorf("status %d, want 304", res.StatusCode)
	}
}
