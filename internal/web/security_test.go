package web

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/prometheus/client_golang/prometheus"

	"parley/internal/chat"
	"parley/internal/metrics"
	"parley/internal/outbox"
	"parley/internal/sqlstore"
	"parley/internal/wire"
)

// testClock is a clock tests move by hand, so expiry and limits are tested without
// sleeping.
type testClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *testClock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// secEnv is Parley with sign-in by emailed link, on real embedded backends (SQLite,
// the local outbox, the in-process bus), with a hand-moved clock and its own metrics.
type secEnv struct {
	t      *testing.T
	cfg    Config
	srv    *Server
	ts     *httptest.Server
	store  *sqlstore.DB
	outbox string
	clock  *testClock
	reg    *prometheus.Registry
}

const secAdmin = "admin@example.org"

func newSecEnv(t *testing.T, cfg Config) *secEnv {
	t.Helper()
	e := &secEnv{t: t, clock: &testClock{now: time.Now()}, reg: prometheus.NewRegistry()}
	cfg.Dev = true
	cfg.CookieKey = []byte("security test key, 32 bytes long")
	cfg.AdminEmails = append(cfg.AdminEmails, secAdmin)
	site := newTestSite(t, cfg, func(d *Deps, site *testSite) {
		ob, err := outbox.New(outbox.Options{Dir: filepath.Join(site.dir, "outbox")})
		if err != nil {
			t.Fatal(err)
		}
		d.Config.OutboxDir, e.outbox = ob.Dir(), ob.Dir()
		d.Mailer, d.SignIns, d.Logins, d.Metrics = ob, site.store, site.store, metrics.New(e.reg)
		e.cfg = d.Config
	})
	e.srv, e.ts, e.store = site.srv, site.ts, site.store
	e.srv.now = e.clock.Now
	return e
}

// request sends a request as a same-origin browser page would (unless h says
// otherwise) and returns the response with its body; redirects are not followed.
func (e *secEnv) request(method, path string, form url.Values, h http.Header, cookies ...*http.Cookie) (*http.Response, string) {
	e.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, e.ts.URL+path, body)
	if err != nil {
		e.t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	if method == http.MethodPost {
		req.Header.Set("Sec-Fetch-Site", "same-origin")
	}
	for k, v := range h {
		req.Header[k] = v
	}
	for _, c := range cookies {
		if c != nil {
			req.AddCookie(c)
		}
	}
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	res, err := client.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res, string(b)
}

// mails returns the outbox, newest first.
func (e *secEnv) mails() []outbox.Summary {
	e.t.Helper()
	list, err := outbox.List(e.outbox, 0)
	if err != nil {
		e.t.Fatal(err)
	}
	return list
}

var signInLinkPattern = regexp.MustCompile(`https?://\S+/signin/([A-Za-z0-9_-]+)`)

// lastLink returns the token of the newest sign-in email, checking it went to email.
func (e *secEnv) lastLink(email string) string {
	e.t.Helper()
	list := e.mails()
	if len(list) == 0 {
		e.t.Fatal("no email in the outbox")
	}
	m, err := outbox.Read(e.outbox, list[0].Name)
	if err != nil {
		e.t.Fatal(err)
	}
	if m.To != email {
		e.t.Fatalf("sign-in email went to %q, want %q", m.To, email)
	}
	match := signInLinkPattern.FindStringSubmatch(m.Text)
	if match == nil {
		e.t.Fatalf("no sign-in link in the email:\n%s", m.Text)
	}
	return match[1]
}

// signIn joins room as email through the emailed link and returns the verified cookie.
func (e *secEnv) signIn(room, email string) *http.Cookie {
	e.t.Helper()
	res, body := e.request(http.MethodPost, "/join", url.Values{"room": {room}, "email": {email}}, nil)
	if res.StatusCode != http.StatusOK || !strings.Contains(body, "Check your email") {
		e.t.Fatalf("join %s as %s: %d %s", room, email, res.StatusCode, body)
	}
	res, _ = e.request(http.MethodPost, "/signin", url.Values{"token": {e.lastLink(email)}}, nil)
	if res.StatusCode != http.StatusSeeOther || res.Header.Get("Location") != "/rooms/"+room {
		e.t.Fatalf("sign in %s: %d to %q", email, res.StatusCode, res.Header.Get("Location"))
	}
	return sessionCookie(e.t, res)
}

func sessionCookie(t *testing.T, res *http.Response) *http.Cookie {
	t.Helper()
	for _, c := range res.Cookies() {
		if c.Name == cookieName && c.Value != "" {
			return c
		}
	}
	t.Fatalf("no session cookie set (status %d)", res.StatusCode)
	return nil
}

// cookieFor signs id in on this server and returns its cookie (signed with another
// key, when key is given).
func (e *secEnv) cookieFor(id identity, key []byte) *http.Cookie {
	c := issueCookie(e.t, e.srv.auth, id)
	if key != nil {
		c.Value = resign(c.Value, key)
	}
	return &http.Cookie{Name: cookieName, Value: c.Value}
}

// dialWS opens the room's WebSocket with the given headers.
func (e *secEnv) dialWS(room string, h http.Header) (*websocket.Conn, *http.Response, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	u := "ws" + strings.TrimPrefix(e.ts.URL, "http") + "/rooms/" + room + "/ws"
	return websocket.Dial(ctx, u, &websocket.DialOptions{HTTPHeader: h})
}

func (e *secEnv) wsHeaders(c *http.Cookie) http.Header {
	h := http.Header{"Origin": {e.cfg.PublicURL}}
	if c != nil {
		h.Set("Cookie", c.Name+"="+c.Value)
	}
	return h
}

// refusals reads parley_refusals_total for reason.
func (e *secEnv) refusals(reason string) float64 {
	e.t.Helper()
	fams, err := e.reg.Gather()
	if err != nil {
		e.t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() != "parley_refusals_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "reason" && l.GetValue() == reason {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

func TestSignInByEmailLink(t *testing.T) {
	e := newSecEnv(t, Config{})
	res, body := e.request(http.MethodPost, "/join", url.Values{"room": {"lobby"}, "email": {" Ann@Example.org "}}, nil)
	if res.StatusCode != http.StatusOK {
		t.Fatalf("join: %d %s", res.StatusCode, body)
	}
	mustContain(t, body, "Check your email", "ann@example.org", `href="/dev/mail"`)
	for _, c := range res.Cookies() {
		if c.Name == cookieName && c.Value != "" {
			t.Fatal("an unverified join set a session cookie")
		}
	}
	token := e.lastLink("ann@example.org")

	// Opening the link (as a mail scanner would, twice) shows a button; it uses nothing up.
	for range 2 {
		res, body = e.request(http.MethodGet, "/signin/"+token, nil, nil)
		if res.StatusCode != http.StatusOK {
			t.Fatalf("GET link: %d", res.StatusCode)
		}
		mustContain(t, body, `action="/signin"`, `value="`+token+`"`)
	}
	if res, _ = e.request(http.MethodGet, "/signin?token="+token, nil, nil); res.StatusCode != http.StatusOK {
		t.Fatalf("GET ?token=: %d", res.StatusCode)
	}

	res, _ = e.request(http.MethodPost, "/signin", url.Values{"token": {token}}, nil)
	if res.StatusCode != http.StatusSeeOther || res.Header.Get("Location") != "/rooms/lobby" {
		t.Fatalf("sign in: %d to %q", res.StatusCode, res.Header.Get("Location"))
	}
	cookie := sessionCookie(t, res)
	if !cookie.HttpOnly || cookie.SameSite != http.SameSiteLaxMode || cookie.Secure {
		t.Errorf("cookie attributes: HttpOnly=%v SameSite=%v Secure=%v", cookie.HttpOnly, cookie.SameSite, cookie.Secure)
	}

	t.Run("UsedLinkRefused", func(t *testing.T) {
		res, body := e.request(http.MethodPost, "/signin", url.Values{"token": {token}}, nil)
		if res.StatusCode != http.StatusNotFound || len(res.Cookies()) != 0 {
			t.Fatalf("second use: %d, cookies %v", res.StatusCode, res.Cookies())
		}
		mustContain(t, body, "expired or was already used")
	})
	t.Run("CookieOpensRoomAndWebSocket", func(t *testing.T) {
		if res, _ := e.request(http.MethodGet, "/rooms/lobby", nil, nil, cookie); res.StatusCode != http.StatusOK {
			t.Fatalf("room page: %d", res.StatusCode)
		}
		ws, _, err := e.dialWS("lobby", e.wsHeaders(cookie))
		if err != nil {
			t.Fatal(err)
		}
		c := newWSClient(t, ws)
		if f := c.expect(wire.TypeWelcome); f.You != "ann@example.org" || f.Role != "host" {
			t.Fatalf("welcome %s", f.raw)
		}
	})
	t.Run("VerifiedJoinGoesStraightIn", func(t *testing.T) {
		before := len(e.mails())
		res, _ := e.request(http.MethodPost, "/join", url.Values{"room": {"other"}, "email": {"ann@example.org"}}, nil, cookie)
		if res.StatusCode != http.StatusSeeOther || res.Header.Get("Location") != "/rooms/other" {
			t.Fatalf("verified join: %d to %q", res.StatusCode, res.Header.Get("Location"))
		}
		if len(e.mails()) != before {
			t.Fatal("a verified join sent another email")
		}
	})
	t.Run("SignOutClearsCookie", func(t *testing.T) {
		res, _ := e.request(http.MethodPost, "/signout", url.Values{}, nil, cookie)
		if res.StatusCode != http.StatusSeeOther {
			t.Fatalf("sign out: %d", res.StatusCode)
		}
		for _, c := range res.Cookies() {
			if c.Name == cookieName && (c.Value != "" || c.MaxAge >= 0) {
				t.Fatalf("sign out left cookie %v", c)
			}
		}
	})
}

func TestSignInLinkExpires(t *testing.T) {
	e := newSecEnv(t, Config{})
	e.request(http.MethodPost, "/join", url.Values{"room": {"r"}, "email": {"bob@example.org"}}, nil)
	token := e.lastLink("bob@example.org")
	e.clock.Add(chat.SignInTTL + time.Second)
	res, _ := e.request(http.MethodPost, "/signin", url.Values{"token": {token}}, nil)
	if res.StatusCode != http.StatusNotFound || len(res.Cookies()) != 0 {
		t.Fatalf("expired link: %d, cookies %v", res.StatusCode, res.Cookies())
	}
	if got := e.refusals(metrics.ReasonBadSignIn); got != 1 {
		t.Errorf("bad_signin refusals = %v, want 1", got)
	}
}

func TestSignInBadTokens(t *testing.T) {
	e := newSecEnv(t, Config{})
	good, _ := newToken() // well formed, never stored
	tests := []struct{ name, token string }{
		{"Empty", ""},
		{"Short", "abc"},
		{"Long", good + "A"},
		{"NotBase64URL", strings.Repeat("+", len(good))},
		{"Padding", good[:len(good)-1] + "="},
		{"NonCanonical", good[:len(good)-1] + "B"},
		{"Unknown", good},
		{"SQL", "' OR '1'='1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.token != "" && !strings.ContainsAny(tt.token, "/ '") {
				if res, _ := e.request(http.MethodGet, "/signin/"+url.PathEscape(tt.token), nil, nil); tt.name != "Unknown" && res.StatusCode != http.StatusNotFound {
					t.Errorf("GET: %d, want 404", res.StatusCode)
				}
			}
			res, _ := e.request(http.MethodPost, "/signin", url.Values{"token": {tt.token}}, nil)
			if res.StatusCode != http.StatusNotFound || len(res.Cookies()) != 0 {
				t.Errorf("POST: %d, cookies %v; want 404 and none", res.StatusCode, res.Cookies())
			}
		})
	}
}

// TestForgedCookiesRefused: only a cookie signed with the server's key, not expired,
// and (with email-link sign-in) verified, is anyone.
func TestForgedCookiesRefused(t *testing.T) {
	e := newSecEnv(t, Config{})
	now := time.Now()
	good := e.cookieFor(identity{Email: "a@example.org", IssuedAt: now, Verified: true}, nil)
	tampered := *good
	tampered.Value = strings.Replace(good.Value, good.Value[:4], "Yj", 1)
	tests := []struct {
		name   string
		cookie *http.Cookie
		status int
	}{
		{"Valid", good, http.StatusSwitchingProtocols},
		{"None", nil, http.StatusUnauthorized},
		{"OtherKey", e.cookieFor(identity{Email: "a@example.org", IssuedAt: now, Verified: true}, []byte("another key, also 32 bytes long!")), http.StatusUnauthorized},
		{"Tampered", &tampered, http.StatusUnauthorized},
		{"Expired", e.cookieFor(identity{Email: "a@example.org", IssuedAt: now.Add(-cookieMaxAge - time.Minute), Verified: true}, nil), http.StatusUnauthorized},
		{"Unverified", e.cookieFor(identity{Email: "a@example.org", IssuedAt: now}, nil), http.StatusUnauthorized},
		{"Garbage", &http.Cookie{Name: cookieName, Value: "x.y"}, http.StatusUnauthorized},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ws, res, err := e.dialWS("room1", e.wsHeaders(tt.cookie))
			if ws != nil {
				defer ws.CloseNow()
			}
			if tt.status == http.StatusSwitchingProtocols {
				if err != nil {
					t.Fatalf("valid cookie refused: %v", err)
				}
				return
			}
			if err == nil || res == nil || res.StatusCode != tt.status {
				t.Fatalf("dial: %v, response %v; want %d", err, res, tt.status)
			}
			// The room page and history send the stranger to sign in: neither takes the
			// cookie for anyone.
			if res, _ := e.request(http.MethodGet, "/rooms/room1", nil, nil, tt.cookie); res.StatusCode != http.StatusSeeOther ||
				res.Header.Get("Location") != "/signin?next=%2Frooms%2Froom1" {
				t.Errorf("room page: %d to %q, want 303 to the sign-in page", res.StatusCode, res.Header.Get("Location"))
			}
			if res, _ := e.request(http.MethodGet, "/history?email=a@example.org", nil, nil, tt.cookie); res.StatusCode != http.StatusSeeOther ||
				!strings.HasPrefix(res.Header.Get("Location"), "/signin?next=") {
				t.Errorf("history: %d to %q, want 303 to the sign-in page", res.StatusCode, res.Header.Get("Location"))
			}
		})
	}
}

// TestStrangerCannotJoinAsSomeoneElse: typing someone's email only emails them a
// link; a third person with their own identity finds the room full.
func TestStrangerCannotJoinAsSomeoneElse(t *testing.T) {
	e := newSecEnv(t, Config{})
	host := e.signIn("pair", "host@example.org")
	guest := e.signIn("pair", "guest@example.org")
	for _, c := range []*http.Cookie{host, guest} {
		ws, _, err := e.dialWS("pair", e.wsHeaders(c))
		if err != nil {
			t.Fatal(err)
		}
		newWSClient(t, ws).expect(wire.TypeWelcome)
	}

	res, body := e.request(http.MethodPost, "/join", url.Values{"room": {"pair"}, "email": {"host@example.org"}}, nil)
	if res.StatusCode != http.StatusOK || len(res.Cookies()) != 0 {
		t.Fatalf("stranger joining as host: %d, cookies %v", res.StatusCode, res.Cookies())
	}
	mustContain(t, body, "Check your email")
	e.lastLink("host@example.org") // the link went to the host, not to the stranger

	// A third person is told the room is taken before any email is sent; signed in
	// by another room, their WebSocket to this one is refused too.
	res, body = e.request(http.MethodPost, "/join", url.Values{"room": {"pair"}, "email": {"stranger@example.org"}}, nil)
	if res.StatusCode != http.StatusConflict || len(res.Cookies()) != 0 {
		t.Fatalf("stranger joining a full room: %d, cookies %v", res.StatusCode, res.Cookies())
	}
	mustContain(t, body, "already has two people")
	mustNotContain(t, body, "Check your email")
	stranger := e.signIn("elsewhere", "stranger@example.org")
	ws, _, err := e.dialWS("pair", e.wsHeaders(stranger))
	if err != nil {
		t.Fatal(err)
	}
	c := newWSClient(t, ws)
	if f := c.expect(wire.TypeError); f.Code != chat.ERoomFull {
		t.Fatalf("stranger got %s, want room_full", f.raw)
	}
	if code := c.closed(); code != websocket.StatusCode(StatusRoomFull) {
		t.Fatalf("close code %d, want %d", code, StatusRoomFull)
	}
}

func TestHistoryOwnOnly(t *testing.T) {
	e := newSecEnv(t, Config{})
	ctx := context.Background()
	if _, _, err := e.store.Enter(ctx, "hist", "host@example.org", chat.Now()); err != nil {
		t.Fatal(err)
	}
	host := e.cookieFor(identity{Email: "host@example.org", IssuedAt: time.Now(), Verified: true}, nil)
	other := e.cookieFor(identity{Email: "other@example.org", IssuedAt: time.Now(), Verified: true}, nil)
	admin := e.cookieFor(identity{Email: secAdmin, IssuedAt: time.Now(), Verified: true}, nil)
	tests := []struct {
		name   string
		query  string
		cookie *http.Cookie
		status int
		lists  bool
	}{
		{"Own", "", host, http.StatusOK, true},
		{"OwnByEmail", "?email=HOST@example.org", host, http.StatusOK, true},
		{"Someone else's", "?email=host@example.org", other, http.StatusForbidden, false},
		{"Anonymous", "?email=host@example.org", nil, http.StatusSeeOther, false}, // to the sign-in page
		{"Admin", "?email=host@example.org", admin, http.StatusOK, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, body := e.request(http.MethodGet, "/history"+tt.query, nil, nil, tt.cookie)
			if res.StatusCode != tt.status {
				t.Fatalf("status %d, want %d", res.StatusCode, tt.status)
			}
			if got := strings.Contains(body, ">hist<"); got != tt.lists {
				t.Fatalf("lists the chat: %v, want %v:\n%s", got, tt.lists, body)
			}
		})
	}
}

func TestCrossSiteRequestsRefused(t *testing.T) {
	e := newSecEnv(t, Config{})
	tests := []struct {
		name   string
		path   string
		h      http.Header
		status int
	}{
		{"JoinCrossSite", "/join", http.Header{"Sec-Fetch-Site": {"cross-site"}}, http.StatusForbidden},
		{"JoinSameSite", "/join", http.Header{"Sec-Fetch-Site": {"same-site"}}, http.StatusForbidden},
		{"JoinForeignOrigin", "/join", http.Header{"Sec-Fetch-Site": nil, "Origin": {"http://evil.example"}}, http.StatusForbidden},
		{"SignInCrossSite", "/signin", http.Header{"Sec-Fetch-Site": {"cross-site"}}, http.StatusForbidden},
		{"SignOutCrossSite", "/signout", http.Header{"Sec-Fetch-Site": {"cross-site"}}, http.StatusForbidden},
		{"JoinPublicOrigin", "/join", http.Header{"Sec-Fetch-Site": nil, "Origin": {e.cfg.PublicURL}}, http.StatusOK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			form := url.Values{"room": {"x"}, "email": {"victim@example.org"}, "token": {"t"}}
			res, _ := e.request(http.MethodPost, tt.path, form, tt.h)
			if res.StatusCode != tt.status || (tt.status == http.StatusForbidden && len(res.Cookies()) != 0) {
				t.Fatalf("status %d cookies %v, want %d", res.StatusCode, res.Cookies(), tt.status)
			}
		})
	}
	if got := e.refusals(metrics.ReasonCrossSite); got != 5 {
		t.Errorf("cross_site refusals = %v, want 5", got)
	}
	t.Run("WebSocketForeignOrigin", func(t *testing.T) {
		c := e.cookieFor(identity{Email: "a@example.org", IssuedAt: time.Now(), Verified: true}, nil)
		_, res, err := e.dialWS("x", http.Header{"Origin": {"http://evil.example"}, "Cookie": {c.Name + "=" + c.Value}})
		if err == nil || res == nil || res.StatusCode != http.StatusForbidden {
			t.Fatalf("foreign Origin: %v %v, want 403", err, res)
		}
	})
}

func TestSecurityHeadersAndCookies(t *testing.T) {
	e := newSecEnv(t, Config{})
	for _, path := range []string{"/", "/history", "/signin/x", "/nope"} {
		res, _ := e.request(http.MethodGet, path, nil, nil)
		csp := res.Header.Get("Content-Security-Policy")
		if !strings.Contains(csp, "default-src 'self'") || !strings.Contains(csp, "frame-ancestors 'none'") ||
			strings.Contains(csp, "unsafe-inline") || strings.Contains(csp, "unsafe-eval") {
			t.Errorf("%s: CSP %q", path, csp)
		}
		if res.Header.Get("X-Content-Type-Options") != "nosniff" || res.Header.Get("Referrer-Policy") != "same-origin" {
			t.Errorf("%s: headers %v", path, res.Header)
		}
	}
	// No page has inline script: every <script> has a src.
	for _, path := range []string{"/", "/history", "/signin/x"} {
		_, body := e.request(http.MethodGet, path, nil, nil)
		if regexp.MustCompile(`<script(\s[^>]*)?>\s*[^<\s]`).MatchString(body) || strings.Contains(body, " onclick=") {
			t.Errorf("%s has inline script", path)
		}
	}
	t.Run("SecureCookieOverHTTPS", func(t *testing.T) {
		s := NewServer(Deps{Config: Config{PublicURL: "https://chat.example.org", Auth: AuthTrust}})
		rec := httptest.NewRecorder()
		if err := s.signInVerified(rec, nil, "a@example.org"); err != nil {
			t.Fatal(err)
		}
		c := rec.Result().Cookies()[0]
		if !c.Secure || !c.HttpOnly || c.SameSite != http.SameSiteLaxMode {
			t.Fatalf("cookie %v", c)
		}
	})
}

// TestLimitsTriggerAndRecover: each limit refuses with a clear 429 (or a
// rate_limited frame), is counted in /metrics, and lets the person in again once
// time has passed or a connection closed.
func TestLimitsTriggerAndRecover(t *testing.T) {
	t.Run("SignInsPerEmail", func(t *testing.T) {
		e := newSecEnv(t, Config{Limits: Limits{SignInsPerEmail: 2, SignInsPerIP: -1, JoinsPerMinute: -1}})
		join := func() int {
			res, _ := e.request(http.MethodPost, "/join", url.Values{"room": {"r"}, "email": {"flood@example.org"}}, nil)
			return res.StatusCode
		}
		for i := range 2 {
			if s := join(); s != http.StatusOK {
				t.Fatalf("join %d: %d", i, s)
			}
		}
		res, body := e.request(http.MethodPost, "/join", url.Values{"room": {"r"}, "email": {"flood@example.org"}}, nil)
		if res.StatusCode != http.StatusTooManyRequests {
			t.Fatalf("third sign-in email: %d, want 429", res.StatusCode)
		}
		// The limit and the wait are stated as they are: 2 an hour, the next in 30 minutes.
		mustContain(t, body, "2 sign-in emails went to flood@example.org within the last hour", "in about 30 minutes")
		if n := len(e.mails()); n != 2 {
			t.Fatalf("%d emails sent, want 2", n)
		}
		// Another address is not affected.
		if res, _ := e.request(http.MethodPost, "/join", url.Values{"room": {"r"}, "email": {"calm@example.org"}}, nil); res.StatusCode != http.StatusOK {
			t.Fatalf("other address: %d", res.StatusCode)
		}
		e.clock.Add(30 * time.Minute) // 2 per hour: one more after half an hour
		if s := join(); s != http.StatusOK {
			t.Fatalf("after 30 minutes: %d", s)
		}
		if got := e.refusals(metrics.ReasonSignInLimited); got != 1 {
			t.Errorf("signin_limited = %v, want 1", got)
		}
	})
	t.Run("SignInsPerIP", func(t *testing.T) {
		e := newSecEnv(t, Config{Limits: Limits{SignInsPerIP: 3, JoinsPerMinute: -1}})
		for i := range 4 {
			res, _ := e.request(http.MethodPost, "/join", url.Values{"room": {"r"}, "email": {fmt.Sprintf("p%d@example.org", i)}}, nil)
			if want := map[bool]int{true: http.StatusOK, false: http.StatusTooManyRequests}[i < 3]; res.StatusCode != want {
				t.Fatalf("join %d: %d, want %d", i, res.StatusCode, want)
			}
		}
		e.clock.Add(20 * time.Minute)
		if res, _ := e.request(http.MethodPost, "/join", url.Values{"room": {"r"}, "email": {"late@example.org"}}, nil); res.StatusCode != http.StatusOK {
			t.Fatalf("after 20 minutes: %d", res.StatusCode)
		}
	})
	t.Run("JoinsPerMinute", func(t *testing.T) {
		e := newSecEnv(t, Config{Limits: Limits{JoinsPerMinute: 2}})
		bad := url.Values{"room": {"bad room"}, "email": {"x@example.org"}}
		for i := range 2 {
			if res, _ := e.request(http.MethodPost, "/join", bad, nil); res.StatusCode != http.StatusBadRequest {
				t.Fatalf("join %d: %d", i, res.StatusCode)
			}
		}
		res, body := e.request(http.MethodPost, "/join", bad, nil)
		if res.StatusCode != http.StatusTooManyRequests {
			t.Fatalf("third join: %d, want 429", res.StatusCode)
		}
		mustContain(t, body, "Too many attempts")
		e.clock.Add(30 * time.Second)
		if res, _ := e.request(http.MethodPost, "/join", bad, nil); res.StatusCode != http.StatusBadRequest {
			t.Fatalf("after 30 s: %d", res.StatusCode)
		}
		if got := e.refusals(metrics.ReasonJoinLimited); got != 1 {
			t.Errorf("join_limited = %v, want 1", got)
		}
	})
	t.Run("ConnsPerPerson", func(t *testing.T) {
		e := newSecEnv(t, Config{Limits: Limits{ConnsPerPerson: 2}})
		c := e.cookieFor(identity{Email: "tabs@example.org", IssuedAt: time.Now(), Verified: true}, nil)
		if _, _, err := e.store.Enter(context.Background(), "tabs", "tabs@example.org", chat.Now()); err != nil {
			t.Fatal(err) // as POST /join does
		}
		var open []*wsClient
		for range 2 {
			ws, _, err := e.dialWS("tabs", e.wsHeaders(c))
			if err != nil {
				t.Fatal(err)
			}
			cl := newWSClient(t, ws)
			cl.expect(wire.TypeWelcome)
			open = append(open, cl)
		}
		ws, _, err := e.dialWS("tabs", e.wsHeaders(c))
		if err != nil {
			t.Fatal(err)
		}
		third := newWSClient(t, ws)
		if f := third.expect(wire.TypeError); f.Code != chat.ERateLimited {
			t.Fatalf("third connection got %s", f.raw)
		}
		if code := third.closed(); code != websocket.StatusPolicyViolation {
			t.Fatalf("third connection closed with %d, want 1008", code)
		}
		if got := e.refusals(metrics.ReasonConnLimited); got != 1 {
			t.Errorf("conn_limited = %v, want 1", got)
		}
		_ = open[0].ws.Close(websocket.StatusNormalClosure, "")
		deadline := time.Now().Add(5 * time.Second)
		for {
			ws, _, err := e.dialWS("tabs", e.wsHeaders(c))
			if err != nil {
				t.Fatal(err)
			}
			cl := newWSClient(t, ws)
			if f := cl.next(); f.Type == wire.TypeWelcome {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("a closed connection never freed its place")
			}
			time.Sleep(5 * time.Millisecond)
		}
	})
}

// TestNoHeaderInjection sends addresses and rooms carrying line breaks and header
// text through the real join and sign-in mail path: each is refused before any email
// is written, and a sign-in email's headers name exactly one recipient.
func TestNoHeaderInjection(t *testing.T) {
	e := newSecEnv(t, Config{Limits: Limits{JoinsPerMinute: -1, SignInsPerIP: -1}})
	tests := []struct{ name, room, email string }{
		{"CRLFBcc", "r", "a@example.org\r\nBcc: evil@example.org"},
		{"LF", "r", "a@example.org\nBcc: evil@example.org"},
		{"CR", "r", "a@example.org\rBcc: evil@example.org"},
		{"EncodedCRLF", "r", "a@example.org%0d%0aBcc:evil@example.org"},
		{"DisplayName", "r", "Evil <evil@example.org>"},
		{"TwoAddresses", "r", "a@example.org, evil@example.org"},
		{"NUL", "r", "a@example.org\x00evil"},
		{"UnicodeLineSeparator", "r", "a@example.org\u2028Bcc: evil@example.org"},
		{"RoomCRLF", "r\r\nBcc: evil@example.org", "a@example.org"},
		{"RoomPath", "../admin", "a@example.org"},
		{"RoomTooLong", strings.Repeat("r", 65), "a@example.org"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, _ := e.request(http.MethodPost, "/join", url.Values{"room": {tt.room}, "email": {tt.email}}, nil)
			if res.StatusCode != http.StatusBadRequest {
				t.Fatalf("status %d, want 400", res.StatusCode)
			}
			if n := len(e.mails()); n != 0 {
				t.Fatalf("%d emails written", n)
			}
		})
	}
	t.Run("SignInEmailHeaders", func(t *testing.T) {
		e.request(http.MethodPost, "/join", url.Values{"room": {"r"}, "email": {"a@example.org"}}, nil)
		list := e.mails()
		if len(list) != 1 {
			t.Fatalf("%d emails", len(list))
		}
		raw, err := os.ReadFile(filepath.Join(e.outbox, list[0].Name))
		if err != nil {
			t.Fatal(err)
		}
		m, err := outbox.Read(e.outbox, list[0].Name)
		if err != nil {
			t.Fatal(err)
		}
		if to := m.Headers["To"]; len(to) != 1 || !strings.Contains(to[0], "a@example.org") || strings.Contains(to[0], ",") {
			t.Fatalf("To headers %q", to)
		}
		for _, h := range []string{"Cc", "Bcc", "Reply-To"} {
			if len(m.Headers[h]) != 0 {
				t.Fatalf("unexpected %s header %q", h, m.Headers[h])
			}
		}
		if strings.Contains(strings.ToLower(string(raw)), "evil") {
			t.Fatal("an injected address reached the email")
		}
	})
}

func TestClientIP(t *testing.T) {
	s := NewServer(Deps{Config: Config{TrustedProxies: []string{"10.0.0.0/8", "192.0.2.7"}, Auth: AuthTrust}})
	tests := []struct {
		name, remote, xff, want string
	}{
		{"Direct", "203.0.113.5:4000", "", "203.0.113.5"},
		{"DirectIgnoresHeader", "203.0.113.5:4000", "1.2.3.4", "203.0.113.5"},
		{"ViaProxy", "10.1.2.3:4000", "198.51.100.9", "198.51.100.9"},
		{"ViaTwoProxies", "10.1.2.3:4000", "198.51.100.9, 192.0.2.7", "198.51.100.9"},
		{"SpoofedLeftmostIgnored", "10.1.2.3:4000", "1.1.1.1, 198.51.100.9", "198.51.100.9"},
		{"GarbageHeader", "10.1.2.3:4000", "not-an-ip", "10.1.2.3"},
		{"IPv6By64", "[2001:db8:1:2:3:4:5:6]:4000", "", "2001:db8:1:2::/64"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, "/", nil)
			r.RemoteAddr = tt.remote
			if tt.xff != "" {
				r.Header.Set("X-Forwarded-For", tt.xff)
			}
			if got := s.clientIP(r); got != tt.want {
				t.Fatalf("clientIP = %q, want %q", got, tt.want)
			}
		})
	}
}

// TestStrangerCannotReattachToOthersSession: naming someone else's session on the
// WebSocket does not show it; the stranger, who has no chat in the room, is told so.
func TestStrangerCannotReattachToOthersSession(t *testing.T) {
	e := newSecEnv(t, Config{})
	ctx := context.Background()
	sess, _, err := e.store.Enter(ctx, "private", "host@example.org", chat.Now())
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.store.Append(ctx, chat.Message{SessionID: sess.ID, ClientID: "c1", From: "host@example.org",
		Room: "private", Kind: chat.KindChat, Text: "for the host's peer only"}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.store.End(ctx, sess.ID, "host@example.org", chat.Now()); err != nil {
		t.Fatal(err)
	}
	stranger := e.cookieFor(identity{Email: "stranger@example.org", IssuedAt: time.Now(), Verified: true}, nil)
	ctxDial, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	u := "ws" + strings.TrimPrefix(e.ts.URL, "http") + "/rooms/private/ws?session=" + sess.ID
	ws, _, err := websocket.Dial(ctxDial, u, &websocket.DialOptions{HTTPHeader: e.wsHeaders(stranger)})
	if err != nil {
		t.Fatal(err)
	}
	c := newWSClient(t, ws)
	if f := c.expect(wire.TypeError); f.Code != chat.ENoChat {
		t.Fatalf("stranger got %s: must be told they have no chat here", f.raw)
	}
}
