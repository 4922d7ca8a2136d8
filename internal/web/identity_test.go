package web

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestCookieAuth(t *testing.T) {
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	a := newCookieAuth([]byte("key one"), true)
	a.now = func() time.Time { return now }
	other := newCookieAuth([]byte("key two"), true)
	good := a.encode(identity{Email: "a@x.org", IssuedAt: now.Add(-time.Hour), Verified: true})
	tests := []struct {
		name  string
		value string
		want  string // email, "" when not signed in
	}{
		{"OK", good, "a@x.org"},
		{"PipeInEmail", a.encode(identity{Email: "a|b@x.org", IssuedAt: now}), "a|b@x.org"},
		{"OtherKey", other.encode(identity{Email: "a@x.org", IssuedAt: now}), ""},
		{"TamperedPayload", strings.Replace(good, good[:4], "AAAA", 1), ""},
		{"TamperedMAC", good[:len(good)-2] + "AA", ""},
		{"NoMAC", strings.Split(good, ".")[0], ""},
		{"Empty", "", ""},
		{"Garbage", "!!!.???", ""},
		{"Expired", a.encode(identity{Email: "a@x.org", IssuedAt: now.Add(-31 * 24 * time.Hour)}), ""},
		{"FromTheFuture", a.encode(identity{Email: "a@x.org", IssuedAt: now.Add(time.Hour)}), ""},
		{"NotNormalized", a.encode(identity{Email: "A@X.org", IssuedAt: now}), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "/", nil)
			r.AddCookie(&http.Cookie{Name: cookieName, Value: tt.value})
			id, ok := a.identify(r)
			if ok != (tt.want != "") || id.Email != tt.want {
				t.Fatalf("identify = %+v, %v; want %q", id, ok, tt.want)
			}
		})
	}
	id, _ := a.decode(good)
	if !id.Verified || !id.IssuedAt.Equal(now.Add(-time.Hour)) {
		t.Fatalf("decoded %+v", id)
	}
}

func TestCookieAttributes(t *testing.T) {
	for _, secure := range []bool{false, true} {
		a := newCookieAuth([]byte("k"), secure)
		w := httptest.NewRecorder()
		a.issue(w, identity{Email: "a@x.org", IssuedAt: time.Now()})
		c := w.Result().Cookies()[0]
		if c.Name != cookieName || !c.HttpOnly || c.SameSite != http.SameSiteLaxMode || c.Path != "/" || c.Secure != secure || c.MaxAge != 30*24*3600 {
			t.Fatalf("cookie %+v", c)
		}
		w = httptest.NewRecorder()
		a.clear(w)
		if c := w.Result().Cookies()[0]; c.MaxAge >= 0 || c.Value != "" {
			t.Fatalf("cleared cookie %+v", c)
		}
	}
}

func TestServerIdentity(t *testing.T) {
	s := NewServer(Deps{Config: Config{CookieKey: []byte("k"), AdminEmails: []string{" Boss@X.org "}, Auth: AuthTrust}}) // a typed-in email counts only under trust
	w := httptest.NewRecorder()
	s.signInVerified(w, httptest.NewRequest("GET", "/signin", nil), "a@x.org")
	r := httptest.NewRequest("GET", "/", nil)
	r.AddCookie(w.Result().Cookies()[0])
	if email, ok := s.currentEmail(r); !ok || email != "a@x.org" {
		t.Fatalf("currentEmail = %q, %v", email, ok)
	}
	if id, _ := s.currentIdentity(r); !id.Verified {
		t.Fatal("a verified sign-in lost its verification")
	}
	w = httptest.NewRecorder()
	s.signIn(w, httptest.NewRequest("POST", "/join", nil), "b@x.org")
	if id, ok := newCookieAuth([]byte("k"), false).decode(w.Result().Cookies()[0].Value); !ok || id.Verified || id.Email != "b@x.org" {
		t.Fatalf("typed-in sign-in: %+v %v", id, ok)
	}
	if !s.isAdmin("boss@x.org") || s.isAdmin("a@x.org") || s.isAdmin("") {
		t.Fatal("isAdmin")
	}
}
