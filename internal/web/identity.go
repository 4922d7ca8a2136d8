package web

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"parley/internal/chat"
)

// Cookie settings. The cookie is the only proof of identity Parley accepts, on pages
// and on the WebSocket alike. It names a sign-in kept server-side (chat.LoginStore),
// so signing out ends it at once.
const (
	cookieName   = "parley_session"
	cookieMaxAge = chat.LoginTTL
	// loginCacheTTL is how long this replica believes a sign-in it read without asking
	// the store again. Signing out on this replica drops it from the cache at once;
	// other replicas stop believing it within loginCacheTTL.
	loginCacheTTL = 10 * time.Second
	// loginCacheMax bounds the cache; when full it is emptied and refills as people
	// come back.
	loginCacheMax = 10000
)

// identity is who a request comes from, as the cookie's sign-in says.
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
	// issue signs the browser in as id (ending the sign-in its cookie named before).
	issue(w http.ResponseWriter, r *http.Request, id identity) error
	// revoke signs this browser out: its sign-in ends and the cookie is removed.
	revoke(w http.ResponseWriter, r *http.Request) error
	// revokeAll ends every sign-in of email, on every browser.
	revokeAll(ctx context.Context, email string) (int64, error)
	// loginKey names the sign-in the request's cookie carries, for stillSignedIn.
	loginKey(r *http.Request) (string, bool)
	// stillSignedIn reports whether the sign-in named key still holds: false once it
	// has been signed out (here or on another replica) or has expired. A store that
	// cannot answer is no reason to end anything: then it reports true.
	stillSignedIn(ctx context.Context, key string) bool
}

// currentEmail returns the signed-in person's email from the cookie.
func (s *Server) currentEmail(r *http.Request) (string, bool) {
	id, ok := s.auth.identify(r)
	return id.Email, ok
}

// currentIdentity returns the whole identity, for pages that care whether it is verified.
func (s *Server) currentIdentity(r *http.Request) (identity, bool) { return s.auth.identify(r) }

// signIn signs the browser in as email (already normalized by the caller), unverified:
// the person typed it in.
func (s *Server) signIn(w http.ResponseWriter, r *http.Request, email string) error {
	return s.auth.issue(w, r, identity{Email: email, IssuedAt: s.now()})
}

// signInVerified signs the browser in as an email proven by an emailed link.
func (s *Server) signInVerified(w http.ResponseWriter, r *http.Request, email string) error {
	return s.auth.issue(w, r, identity{Email: email, IssuedAt: s.now(), Verified: true})
}

// signOut ends this browser's sign-in and removes the cookie.
func (s *Server) signOut(w http.ResponseWriter, r *http.Request) error { return s.auth.revoke(w, r) }

// loginAuth keeps sign-ins in a chat.LoginStore. The cookie is
// base64(token) "." base64(HMAC-SHA256(key, token)): the signature lets a forged or
// garbled cookie be refused without asking the store, and rotating the key still
// signs everyone out. The store keeps only SHA-256(token).
type loginAuth struct {
	key    []byte
	secure bool
	store  chat.LoginStore
	now    func() time.Time
	log    *slog.Logger

	ttl time.Duration // loginCacheTTL; tests shorten it

	mu    sync.Mutex
	cache map[string]cachedLogin // token hash → sign-in, read within ttl
	gen   uint64                 // bumped by every revocation; a read that raced one is not cached
}

// cachedLogin is a sign-in as read from the store at fetched.
type cachedLogin struct {
	login   chat.Login
	fetched time.Time
}

var _ authenticator = (*loginAuth)(nil)

func newLoginAuth(key []byte, secure bool, store chat.LoginStore, now func() time.Time, log *slog.Logger) *loginAuth {
	return &loginAuth{key: key, secure: secure, store: store, now: now, log: log, ttl: loginCacheTTL, cache: make(map[string]cachedLogin)}
}

func (a *loginAuth) mac(token string) []byte {
	m := hmac.New(sha256.New, a.key)
	m.Write([]byte("login|"))
	m.Write([]byte(token))
	return m.Sum(nil)
}

// newToken returns a fresh cookie value (a token, signed) and the hash its sign-in is
// stored under.
func (a *loginAuth) newToken() (value, hash string) {
	token, hash := newToken()
	return token + "." + base64.RawURLEncoding.EncodeToString(a.mac(token)), hash
}

// tokenHash checks a cookie value's signature and form and returns the hash of its
// token, or false.
func (a *loginAuth) tokenHash(value string) (string, bool) {
	token, m64, ok := strings.Cut(value, ".")
	if !ok || len(token) != tokenLen {
		return "", false
	}
	mac, err := base64.RawURLEncoding.DecodeString(m64)
	if err != nil || !hmac.Equal(mac, a.mac(token)) {
		return "", false
	}
	return tokenHash(token)
}

// cookieHash returns the token hash of r's cookie, or false when it has none that
// this server signed.
func (a *loginAuth) cookieHash(r *http.Request) (string, bool) {
	if r == nil {
		return "", false
	}
	c, err := r.Cookie(cookieName)
	if err != nil {
		return "", false
	}
	return a.tokenHash(c.Value)
}

func (a *loginAuth) identify(r *http.Request) (identity, bool) {
	hash, ok := a.cookieHash(r)
	if !ok {
		return identity{}, false
	}
	l, ok := a.lookup(r.Context(), hash)
	if !ok {
		return identity{}, false
	}
	return identity{Email: l.Email, IssuedAt: l.CreatedAt, Verified: l.Verified}, true
}

// lookup returns the sign-in under hash, from the cache when it was read within
// a.ttl and has not expired, else from the store. A store that cannot answer makes
// the request signed out (logged).
func (a *loginAuth) lookup(ctx context.Context, hash string) (chat.Login, bool) {
	l, err := a.read(ctx, hash)
	if err != nil {
		if !chat.IsCode(err, chat.ENotFound) {
			a.log.Warn("cannot read a sign-in; treating the request as signed out", "code", chat.ErrorCode(err), "err", err)
		}
		return chat.Login{}, false
	}
	return l, true
}

// read is lookup with the store's error: ENotFound for a sign-in that has ended.
func (a *loginAuth) read(ctx context.Context, hash string) (chat.Login, error) {
	now := a.now()
	a.mu.Lock()
	c, ok := a.cache[hash]
	gen := a.gen
	a.mu.Unlock()
	if ok && now.Sub(c.fetched) < a.ttl && now.Before(c.login.ExpiresAt) {
		return c.login, nil
	}
	l, err := a.store.Login(ctx, hash, now)
	if err != nil {
		a.forget(hash)
		return chat.Login{}, err
	}
	a.mu.Lock()
	if a.gen == gen { // no revocation ran meanwhile, so l is not stale
		a.remember(hash, l, now)
	}
	a.mu.Unlock()
	return l, nil
}

// loginKey returns the hash of the request's sign-in token.
func (a *loginAuth) loginKey(r *http.Request) (string, bool) { return a.cookieHash(r) }

// stillSignedIn: see authenticator. Open WebSockets ask it at every ping, so a
// sign-out on any replica ends them within a ping interval and a.ttl.
func (a *loginAuth) stillSignedIn(ctx context.Context, key string) bool {
	_, err := a.read(ctx, key)
	switch {
	case err == nil:
		return true
	case chat.IsCode(err, chat.ENotFound):
		return false
	}
	a.log.Warn("cannot check the sign-in of an open chat; keeping the chat open", "code", chat.ErrorCode(err), "err", err)
	return true
}

// remember caches l under hash as read at now; a.mu is held.
func (a *loginAuth) remember(hash string, l chat.Login, now time.Time) {
	if len(a.cache) >= loginCacheMax {
		clear(a.cache)
	}
	a.cache[hash] = cachedLogin{login: l, fetched: now}
}

// forget drops hash from the cache and keeps reads that raced this from caching it.
func (a *loginAuth) forget(hash string) {
	a.mu.Lock()
	delete(a.cache, hash)
	a.gen++
	a.mu.Unlock()
}

func (a *loginAuth) issue(w http.ResponseWriter, r *http.Request, id identity) error {
	ctx := context.Background()
	if r != nil {
		ctx = r.Context()
		if old, ok := a.cookieHash(r); ok { // the browser's previous sign-in ends
			if err := a.store.RevokeLogin(ctx, old); err != nil {
				return err
			}
			a.forget(old)
		}
	}
	value, hash := a.newToken()
	at := id.IssuedAt.UTC().Truncate(time.Microsecond)
	l := chat.Login{Email: id.Email, Verified: id.Verified, CreatedAt: at, ExpiresAt: at.Add(cookieMaxAge)}
	if err := a.store.CreateLogin(ctx, hash, l); err != nil {
		return err
	}
	a.mu.Lock() // the page or WebSocket that follows a sign-in needs no store read
	a.remember(hash, l, a.now())
	a.mu.Unlock()
	http.SetCookie(w, &http.Cookie{
		Name: cookieName, Value: value, Path: "/",
		MaxAge: int(cookieMaxAge / time.Second), HttpOnly: true,
		Secure: a.secure, SameSite: http.SameSiteLaxMode,
	})
	return nil
}

func (a *loginAuth) revoke(w http.ResponseWriter, r *http.Request) error {
	http.SetCookie(w, &http.Cookie{
		Name: cookieName, Value: "", Path: "/", MaxAge: -1, HttpOnly: true,
		Secure: a.secure, SameSite: http.SameSiteLaxMode,
	})
	hash, ok := a.cookieHash(r)
	if !ok {
		return nil
	}
	a.forget(hash)
	err := a.store.RevokeLogin(r.Context(), hash)
	a.forget(hash) // a read that began before the store's delete must not be cached either
	return err
}

func (a *loginAuth) revokeAll(ctx context.Context, email string) (int64, error) {
	n, err := a.store.RevokeLogins(ctx, email)
	a.mu.Lock()
	for h, c := range a.cache {
		if c.login.Email == email {
			delete(a.cache, h)
		}
	}
	a.gen++
	a.mu.Unlock()
	return n, err
}

// memLogins is a chat.LoginStore in this process's memory, for a server built
// without one (tests and embedding): its sign-ins end with the process and are
// unknown to other replicas.
type memLogins struct {
	mu     sync.Mutex
	logins map[string]chat.Login
}

var _ chat.LoginStore = (*memLogins)(nil)

func newMemLogins() *memLogins { return &memLogins{logins: make(map[string]chat.Login)} }

// CreateLogin implements chat.LoginStore.
func (m *memLogins) CreateLogin(_ context.Context, hash string, l chat.Login) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for h, old := range m.logins {
		if !l.CreatedAt.Before(old.ExpiresAt.Add(time.Hour)) {
			delete(m.logins, h)
		}
	}
	m.logins[hash] = l
	return nil
}

// Login implements chat.LoginStore.
func (m *memLogins) Login(_ context.Context, hash string, now time.Time) (chat.Login, error) {
	m.mu.Lock()
	l, ok := m.logins[hash]
	m.mu.Unlock()
	if !ok || !now.Before(l.ExpiresAt) {
		return chat.Login{}, chat.Errorf(chat.ENotFound, "Not signed in.")
	}
	return l, nil
}

// RevokeLogin implements chat.LoginStore.
func (m *memLogins) RevokeLogin(_ context.Context, hash string) error {
	m.mu.Lock()
	delete(m.logins, hash)
	m.mu.Unlock()
	return nil
}

// RevokeLogins implements chat.LoginStore.
func (m *memLogins) RevokeLogins(_ context.Context, email string) (int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var n int64
	for h, l := range m.logins {
		if l.Email == email {
			delete(m.logins, h)
			n++
		}
	}
	return n, nil
}
