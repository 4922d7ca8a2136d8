package web

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"strconv"
	"strings"
	"time"

	"parley/internal/chat"
)

// Cookie settings. The cookie is the only proof of identity Parley accepts, on pages
// and on the WebSocket alike.
const (
	cookieName   = "parley_session"
	cookieMaxAge = 30 * 24 * time.Hour
	clockSkew    = time.Minute // issued times this far in the future are still believed
)

// identity is who a request comes from, as the signed cookie says.
type identity struct {
	Email    string
	IssuedAt time.Time
	// Verified is true when the email was proven (an emailed link was followed); a
	// typed-in email under trust sign-in is not verified.
	Verified bool
}

// authenticator reads and issues the proof of identity. It is the one seam an
// emailed-link sign-in plugs into: only how the first cookie is issued changes.
type authenticator interface {
	identify(r *http.Request) (identity, bool)
	issue(w http.ResponseWriter, id identity)
	clear(w http.ResponseWriter)
}

// currentEmail returns the signed-in person's email from the signed cookie.
func (s *Server) currentEmail(r *http.Request) (string, bool) {
	id, ok := s.auth.identify(r)
	return id.Email, ok
}

// currentIdentity returns the whole identity, for pages that care whether it is verified.
func (s *Server) currentIdentity(r *http.Request) (identity, bool) { return s.auth.identify(r) }

// signIn sets the cookie for email (already normalized by the caller), unverified:
// the person typed it in.
func (s *Server) signIn(w http.ResponseWriter, r *http.Request, email string) {
	s.auth.issue(w, identity{Email: email, IssuedAt: time.Now()})
}

// signInVerified sets the cookie for an email proven by an emailed link.
func (s *Server) signInVerified(w http.ResponseWriter, r *http.Request, email string) {
	s.auth.issue(w, identity{Email: email, IssuedAt: time.Now(), Verified: true})
}

// signOut removes the cookie.
func (s *Server) signOut(w http.ResponseWriter, r *http.Request) { s.auth.clear(w) }

// cookieAuth keeps the identity in an HMAC-SHA256-signed cookie:
// base64(email|issued-unix|verified) "." base64(mac). Nothing is stored server-side,
// so every replica can check it.
type cookieAuth struct {
	key    []byte
	secure bool
	now    func() time.Time
}

var _ authenticator = (*cookieAuth)(nil)

func newCookieAuth(key []byte, secure bool) *cookieAuth {
	return &cookieAuth{key: key, secure: secure, now: time.Now}
}

func (a *cookieAuth) mac(payload string) []byte {
	m := hmac.New(sha256.New, a.key)
	m.Write([]byte(payload))
	return m.Sum(nil)
}

// encode returns the signed cookie value of id.
func (a *cookieAuth) encode(id identity) string {
	verified := "0"
	if id.Verified {
		verified = "1"
	}
	payload := id.Email + "|" + strconv.FormatInt(id.IssuedAt.Unix(), 10) + "|" + verified
	return base64.RawURLEncoding.EncodeToString([]byte(payload)) + "." +
		base64.RawURLEncoding.EncodeToString(a.mac(payload))
}

// decode checks the signature and age of a cookie value and returns its identity.
func (a *cookieAuth) decode(value string) (identity, bool) {
	p64, m64, ok := strings.Cut(value, ".")
	if !ok {
		return identity{}, false
	}
	payload, err1 := base64.RawURLEncoding.DecodeString(p64)
	mac, err2 := base64.RawURLEncoding.DecodeString(m64)
	if err1 != nil || err2 != nil || !hmac.Equal(mac, a.mac(string(payload))) {
		return identity{}, false
	}
	return a.parse(string(payload))
}

// parse reads a verified payload. The email may itself contain '|', so fields are
// taken from the right.
func (a *cookieAuth) parse(payload string) (identity, bool) {
	rest, verified, ok1 := cutLast(payload, "|")
	email, issued, ok2 := cutLast(rest, "|")
	unix, err := strconv.ParseInt(issued, 10, 64)
	if !ok1 || !ok2 || err != nil || (verified != "0" && verified != "1") {
		return identity{}, false
	}
	at := time.Unix(unix, 0)
	now := a.now()
	if at.After(now.Add(clockSkew)) || now.Sub(at) > cookieMaxAge {
		return identity{}, false
	}
	if norm, err := chat.NormalizeEmail(email); err != nil || norm != email {
		return identity{}, false
	}
	return identity{Email: email, IssuedAt: at, Verified: verified == "1"}, true
}

func cutLast(s, sep string) (before, after string, ok bool) {
	i := strings.LastIndex(s, sep)
	if i < 0 {
		return s, "", false
	}
	return s[:i], s[i+len(sep):], true
}

func (a *cookieAuth) identify(r *http.Request) (identity, bool) {
	c, err := r.Cookie(cookieName)
	if err != nil {
		return identity{}, false
	}
	return a.decode(c.Value)
}

func (a *cookieAuth) issue(w http.ResponseWriter, id identity) {
	http.SetCookie(w, &http.Cookie{
		Name: cookieName, Value: a.encode(id), Path: "/",
		MaxAge: int(cookieMaxAge / time.Second), HttpOnly: true,
		Secure: a.secure, SameSite: http.SameSiteLaxMode,
	})
}

func (a *cookieAuth) clear(w http.ResponseWriter) {
	http.SetCookie(w, &http.Cookie{
		Name: cookieName, Value: "", Path: "/", MaxAge: -1, HttpOnly: true,
		Secure: a.secure, SameSite: http.SameSiteLaxMode,
	})
}
