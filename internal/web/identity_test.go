package web

import (
	"context"
	"encoding/base64"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"parley/internal/chat"
	"parley/internal/chattest"
)

// issueCookie signs id in on a and returns the cookie it sets.
func issueCookie(t *testing.T, a authenticator, id identity) *http.Cookie {
	t.Helper()
	w := httptest.NewRecorder()
	if err := a.issue(w, nil, id); err != nil {
		t.Fatal(err)
	}
	return w.Result().Cookies()[0]
}

// resign returns cookie value v signed with key instead: the same token, another MAC.
func resign(v string, key []byte) string {
	token, _, _ := strings.Cut(v, ".")
	a := newLoginAuth(key, false, nil, nil, nil)
	return token + "." + base64.RawURLEncoding.EncodeToString(a.mac(token))
}

func identifyValue(a authenticator, value string) (identity, bool) {
	r := httptest.NewRequest("GET", "/", nil)
	r.AddCookie(&http.Cookie{Name: cookieName, Value: value})
	return a.identify(r)
}

func TestLoginAuth(t *testing.T) {
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	store := newMemLogins()
	a := newLoginAuth([]byte("key one"), true, store, clock, testLogger(t))
	good := issueCookie(t, a, identity{Email: "a@x.org", IssuedAt: now.Add(-time.Hour), Verified: true}).Value
	expired := issueCookie(t, a, identity{Email: "a@x.org", IssuedAt: now.Add(-cookieMaxAge - time.Second)}).Value
	tests := []struct {
		name  string
		value string
		want  string // email, "" when not signed in
	}{
		{"OK", good, "a@x.org"},
		{"PipeInEmail", issueCookie(t, a, identity{Email: "a|b@x.org", IssuedAt: now}).Value, "a|b@x.org"},
		{"OtherKey", resign(good, []byte("key two")), ""},
		{"TamperedToken", "AAAA" + good[4:], ""},
		{"TamperedMAC", good[:len(good)-2] + "AA", ""},
		{"NoMAC", strings.Split(good, ".")[0], ""},
		{"Empty", "", ""},
		{"Garbage", "!!!.???", ""},
		{"Expired", expired, ""},
		{"UnknownToken", resign(strings.Repeat("A", 43)+".x", []byte("key one")), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id, ok := identifyValue(a, tt.value)
			if ok != (tt.want != "") || id.Email != tt.want {
				t.Fatalf("identify = %+v, %v; want %q", id, ok, tt.want)
			}
		})
	}
	id, _ := identifyValue(a, good)
	if !id.Verified || !id.IssuedAt.Equal(now.Add(-time.Hour)) {
		t.Fatalf("identity %+v", id)
	}
	// The store holds the token's hash, never the token.
	token, _, _ := strings.Cut(good, ".")
	store.mu.Lock()
	for h := range store.logins {
		if strings.Contains(h, token) || len(h) != 64 {
			t.Errorf("stored key %q is not a SHA-256 hex of the token", h)
		}
	}
	store.mu.Unlock()
}

// TestLoginRevokedAtOnce: a revoked sign-in is refused by the very next request on
// this replica, although it was cached a moment before; another replica (its own
// cache on the same store) stops believing it within loginCacheTTL.
func TestLoginRevokedAtOnce(t *testing.T) {
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	store := newMemLogins()
	key := []byte("shared key")
	a := newLoginAuth(key, false, store, clock, testLogger(t))
	b := newLoginAuth(key, false, store, clock, testLogger(t)) // another replica
	c := issueCookie(t, a, identity{Email: "a@x.org", IssuedAt: now, Verified: true})
	for _, auth := range []*loginAuth{a, b} {
		if _, ok := identifyValue(auth, c.Value); !ok {
			t.Fatal("fresh sign-in refused")
		}
	}
	r := httptest.NewRequest("POST", "/signout", nil)
	r.AddCookie(c)
	w := httptest.NewRecorder()
	if err := a.revoke(w, r); err != nil {
		t.Fatal(err)
	}
	if cleared := w.Result().Cookies()[0]; cleared.MaxAge >= 0 || cleared.Value != "" {
		t.Fatalf("cleared cookie %+v", cleared)
	}
	if _, ok := identifyValue(a, c.Value); ok {
		t.Fatal("a revoked cookie still signs in on the replica that revoked it")
	}
	now = now.Add(loginCacheTTL)
	if _, ok := identifyValue(b, c.Value); ok {
		t.Fatalf("another replica still believes a revoked cookie after %v", loginCacheTTL)
	}

	// Sign out everywhere ends every browser's sign-in of that email only.
	c1 := issueCookie(t, a, identity{Email: "a@x.org", IssuedAt: now, Verified: true})
	c2 := issueCookie(t, a, identity{Email: "a@x.org", IssuedAt: now, Verified: true})
	other := issueCookie(t, a, identity{Email: "b@x.org", IssuedAt: now, Verified: true})
	for _, ck := range []*http.Cookie{c1, c2, other} {
		identifyValue(a, ck.Value) // cached
	}
	if n, err := a.revokeAll(context.Background(), "a@x.org"); err != nil || n != 2 {
		t.Fatalf("revokeAll = %d, %v; want 2", n, err)
	}
	for _, ck := range []*http.Cookie{c1, c2} {
		if _, ok := identifyValue(a, ck.Value); ok {
			t.Fatal("a cookie survived sign out everywhere")
		}
	}
	if _, ok := identifyValue(a, other.Value); !ok {
		t.Fatal("someone else was signed out")
	}
}

func TestCookieAttributes(t *testing.T) {
	for _, secure := range []bool{false, true} {
		a := newLoginAuth([]byte("k"), secure, newMemLogins(), time.Now, testLogger(t))
		c := issueCookie(t, a, identity{Email: "a@x.org", IssuedAt: time.Now()})
		if c.Name != cookieName || !c.HttpOnly || c.SameSite != http.SameSiteLaxMode || c.Path != "/" || c.Secure != secure || c.MaxAge != 30*24*3600 {
			t.Fatalf("cookie %+v", c)
		}
	}
}

func TestMemLoginStore(t *testing.T) {
	chattest.RunLoginStore(t, func(*testing.T) chat.LoginStore { return newMemLogins() })
}

func TestServerIdentity(t *testing.T) {
	s := NewServer(Deps{Config: Config{CookieKey: []byte("k"), AdminEmails: []string{" Boss@X.org "}, Auth: AuthTrust}}) // a typed-in email counts only under trust
	w := httptest.NewRecorder()
	if err := s.signInVerified(w, httptest.NewRequest("GET", "/signin", nil), "a@x.org"); err != nil {
		t.Fatal(err)
	}
	r := httptest.NewRequest("GET", "/", nil)
	r.AddCookie(w.Result().Cookies()[0])
	if email, ok := s.currentEmail(r); !ok || email != "a@x.org" {
		t.Fatalf("currentEmail = %q, %v", email, ok)
	}
	if id, _ := s.currentIdentity(r); !id.Verified {
		t.Fatal("a verified sign-in lost its verification")
	}
	// Signing in again as someone else ends the browser's previous sign-in.
	w = httptest.NewRecorder()
	if err := s.signIn(w, r, "b@x.org"); err != nil {
		t.Fatal(err)
	}
	r2 := httptest.NewRequest("GET", "/", nil)
	r2.AddCookie(w.Result().Cookies()[0])
	if id, ok := s.currentIdentity(r2); !ok || id.Verified || id.Email != "b@x.org" {
		t.Fatalf("typed-in sign-in: %+v %v", id, ok)
	}
	if _, ok := s.currentIdentity(r); ok {
		t.Fatal("the replaced sign-in still counts")
	}
	if !s.isAdmin("boss@x.org") || s.isAdmin("a@x.org") || s.isAdmin("") {
		t.Fatal("isAdmin")
	}
}

// downLogins is a sign-in store that cannot answer.
type downLogins struct{ *memLogins }

func (downLogins) Login(context.Context, string, time.Time) (chat.Login, error) {
	return chat.Login{}, chat.Errorf(chat.EUnavailable, "the database is down")
}

// TestStillSignedIn: an open chat's sign-in check says no only when the store says
// the sign-in has ended (revoked or expired), never because the store cannot answer,
// so a database outage does not close everyone's chats.
func TestStillSignedIn(t *testing.T) {
	now := time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)
	store := newMemLogins()
	a := newLoginAuth([]byte("k"), false, store, func() time.Time { return now }, testLogger(t))
	a.ttl = 0 // every check asks the store
	c := issueCookie(t, a, identity{Email: "a@x.org", IssuedAt: now, Verified: true})
	key, ok := a.tokenHash(c.Value)
	if !ok || !a.stillSignedIn(context.Background(), key) {
		t.Fatal("a fresh sign-in is not signed in")
	}
	down := newLoginAuth([]byte("k"), false, downLogins{store}, func() time.Time { return now }, testLogger(t))
	if !down.stillSignedIn(context.Background(), key) {
		t.Fatal("a store that cannot answer ended an open chat's sign-in")
	}
	if _, err := store.RevokeLogins(context.Background(), "a@x.org"); err != nil {
		t.Fatal(err)
	}
	if a.stillSignedIn(context.Background(), key) {
		t.Fatal("a revoked sign-in is still signed in")
	}
}
