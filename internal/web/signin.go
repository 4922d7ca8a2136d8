package web

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"html"
	"net/http"
	"time"

	"parley/internal/chat"
	"parley/internal/metrics"
)

// How people prove who they are (Config.Auth).
const (
	// AuthEmailLink (the default) believes an email only once the person has opened
	// a sign-in link sent to it.
	AuthEmailLink = "email-link"
	// AuthTrust believes the typed email: the original design's behaviour, for closed networks
	// and benchmarks.
	AuthTrust = "trust"
)

// tokenBytes is the size of the random tokens Parley hands out, in sign-in links and
// (signed) in cookies: 256 bits.
const tokenBytes = 32

// tokenLen is the length of a token as text: unpadded base64url of tokenBytes.
var tokenLen = base64.RawURLEncoding.EncodedLen(tokenBytes)

// errBadSignInLink answers a link that is malformed, unknown, used or expired alike.
var errBadSignInLink = chat.Errorf(chat.ENotFound, "This sign-in link has expired or was already used. Join again to get a new one.")

// newToken returns a fresh random token and the hash under which it is stored: only
// the hash is kept, so the database cannot sign anyone in.
func newToken() (token, hash string) {
	var b [tokenBytes]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails on supported platforms
	sum := sha256.Sum256(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:]), hex.EncodeToString(sum[:])
}

// tokenHash checks that s is a token as newToken makes them (exactly tokenLen
// base64url characters in canonical form) and returns its hash, or false.
func tokenHash(s string) (string, bool) {
	if len(s) != tokenLen {
		return "", false
	}
	b, err := base64.RawURLEncoding.Strict().DecodeString(s)
	if err != nil || len(b) != tokenBytes {
		return "", false
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:]), true
}

// parseSignInToken returns the hash of a sign-in link's token. Anything that is not a
// token as newToken makes them is refused before any store is asked.
func parseSignInToken(s string) (hash string, err error) {
	hash, ok := tokenHash(s)
	if !ok {
		return "", errBadSignInLink
	}
	return hash, nil
}

// signInSentPage is the data of templates/signin_sent.html.
type signInSentPage struct {
	layoutData
	Email   string
	Room    string
	Next    string // the page the link returns to, when not a room
	What    string // that page in words
	Minutes int
	Dev     bool
}

// signInConfirmPage is the data of templates/signin_confirm.html.
type signInConfirmPage struct {
	layoutData
	Token string
	Next  string // where to continue; posted back with the token
	Email string // whom the link was sent to, for "send me a new link" if it is used up
	Room  string // the room it was for, likewise
}

// emailLink reports whether people sign in by emailed link (else the typed email is
// believed).
func (s *Server) emailLink() bool { return s.cfg.Auth != AuthTrust }

// admitVerified lets a valid join form through: with trust sign-in, or when the
// browser's cookie already proves email, the person goes to the room; otherwise a
// sign-in link is emailed and the "check your email" page shown.
func (s *Server) admitVerified(w http.ResponseWriter, r *http.Request, room, email string) bool {
	if !s.emailLink() {
		if err := s.signIn(w, r, email); err != nil {
			s.renderError(w, r, err)
			return false
		}
		s.rememberZone(r, email)
		return true
	}
	if id, ok := s.currentIdentity(r); ok && id.Verified && id.Email == email {
		s.rememberZone(r, email)
		return true
	}
	s.sendSignInLink(w, r, room, email)
	return false
}

// sendSignInLink emails a single-use sign-in link for email that continues to room,
// within the per-address and per-client limits, and shows "check your email".
func (s *Server) sendSignInLink(w http.ResponseWriter, r *http.Request, room, email string) {
	s.sendSignInLinkTo(w, r, room, email, "")
}

// sendSignInLinkTo is sendSignInLink for a link that, once followed, continues to
// next (a safeNext path) rather than to a room.
func (s *Server) sendSignInLinkTo(w http.ResponseWriter, r *http.Request, room, email, next string) {
	if s.mailer == nil || s.signIns == nil {
		s.renderError(w, r, chat.Errorf(chat.EUnavailable, "Sign-in by email is not available right now."))
		return
	}
	if err := s.allowSignInEmail(r, email); err != nil {
		s.metrics.Refused(metrics.ReasonSignInLimited)
		s.renderError(w, r, err)
		return
	}
	token, hash := newToken()
	now := s.now()
	if err := s.signIns.CreateSignIn(r.Context(), hash, email, room, now.Add(chat.SignInTTL)); err != nil {
		s.renderError(w, r, err)
		return
	}
	if err := s.mailer.Send(r.Context(), signInEmail(email, room, s.absoluteURL(signInPath(token, email, room, next)))); err != nil {
		s.log.Warn("cannot send a sign-in email", "code", chat.ErrorCode(err), "err", err)
		if chat.IsCode(err, chat.EPermanent) {
			s.renderError(w, r, chat.Errorf(chat.EInvalid, "We cannot send email to that address. Please check it."))
		} else {
			s.renderError(w, r, chat.Errorf(chat.EUnavailable, "We could not send the sign-in email just now. Please try again in a minute."))
		}
		return
	}
	viewer, _ := s.currentEmail(r)
	s.render(w, r, http.StatusOK, "signin_sent", signInSentPage{
		layoutData: layoutData{Viewer: viewer}, Email: email, Room: room, Next: next, What: describeNext(next),
		Minutes: int(chat.SignInTTL / time.Minute), Dev: s.cfg.Dev,
	})
}

// signInEmail is the sign-in email. Its fields become headers only through the mail
// library, and email and room are already validated (no CR/LF can be in them).
func signInEmail(email, room, link string) chat.Email {
	minutes := int(chat.SignInTTL / time.Minute)
	purpose, purposeHTML := "to join the room "+room, "to join the room <strong>"+html.EscapeString(room)+"</strong>"
	if room == "" { // a sign-in that returns to the page asked for
		purpose, purposeHTML = "and continue where you were", "and continue where you were"
	}
	text := fmt.Sprintf("Hello,\n\nSomeone, hopefully you, asked to sign in to Parley as %s %s.\n\n"+
		"Open this link within %d minutes to sign in:\n\n%s\n\n"+
		"The link works once. If you did not ask for it, ignore this email: nobody can sign in as you without it.\n",
		email, purpose, minutes, link)
	htmlBody := fmt.Sprintf("<p>Hello,</p><p>Someone, hopefully you, asked to sign in to Parley as <strong>%s</strong> "+
		"%s.</p><p><a href=\"%s\">Sign in to Parley</a> (the link works once, "+
		"within %d minutes).</p><p>If you did not ask for it, ignore this email: nobody can sign in as you without it.</p>",
		html.EscapeString(email), purposeHTML, html.EscapeString(link), minutes)
	return chat.Email{To: email, Subject: "Your Parley sign-in link", Text: text, HTML: htmlBody}
}

// handleSignInLink serves GET /signin/{token} and GET /signin?token=…: a page with a
// "Sign in" button that posts the token. Opening the link uses nothing up, so a mail
// scanner that fetches every link in an email cannot spend it; only the person's
// click (a same-origin POST) does.
func (s *Server) handleSignInLink() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		token := r.PathValue("token")
		if token == "" {
			token = r.URL.Query().Get("token")
		}
		if _, err := parseSignInToken(token); err != nil {
			s.renderError(w, r, err)
			return
		}
		viewer, _ := s.currentEmail(r)
		email, _ := chat.NormalizeEmail(r.URL.Query().Get("email"))
		s.render(w, r, http.StatusOK, "signin_confirm", signInConfirmPage{
			layoutData: layoutData{Viewer: viewer}, Token: token,
			Next: safeNext(r.URL.Query().Get("next")), Email: email, Room: roomParam(r.URL.Query().Get("room"))})
	})
}

// handleSignIn serves POST /signin (form field token): it uses up the link, sets the
// verified cookie for the link's email and continues to the link's room.
func (s *Server) handleSignIn() http.Handler {
	return s.formGuard(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.Body = http.MaxBytesReader(w, r.Body, 4<<10)
		hash, err := parseSignInToken(r.PostFormValue("token"))
		if err != nil || s.signIns == nil {
			s.metrics.Refused(metrics.ReasonBadSignIn)
			s.linkUsedUp(w, r)
			return
		}
		email, room, err := s.signIns.ConsumeSignIn(r.Context(), hash, s.now())
		if err != nil {
			if chat.IsCode(err, chat.ENotFound) {
				s.metrics.Refused(metrics.ReasonBadSignIn)
				s.linkUsedUp(w, r)
				return
			}
			s.renderError(w, r, err)
			return
		}
		if err := s.signInVerified(w, r, email); err != nil {
			s.renderError(w, r, err)
			return
		}
		s.rememberZone(r, email)
		http.Redirect(w, r, s.afterSignIn(r, email, room), http.StatusSeeOther)
	}))
}

// verifiedOnly is the authenticator of email-link sign-in: a cookie counts only when
// it says its email was proven by a link, so a cookie issued under trust sign-in
// (same key, typed-in email) proves nothing.
type verifiedOnly struct{ authenticator }

func (v verifiedOnly) identify(r *http.Request) (identity, bool) {
	id, ok := v.authenticator.identify(r)
	if !ok || !id.Verified {
		return identity{}, false
	}
	return id, true
}

// setupSecurity wires sign-in and the limits from d: the mailer and link store,
// metrics, the limiters, trusted proxies, and, with email-link sign-in, an
// authenticator that accepts only cookies proven by a link.
func (s *Server) setupSecurity(d Deps) {
	s.mailer, s.signIns, s.metrics = d.Mailer, d.SignIns, d.Metrics
	if s.now == nil {
		s.now = time.Now
	}
	s.limits = newLimiters(s.cfg.Limits, func() time.Time { return s.now() })
	proxies, err := parseProxies(s.cfg.TrustedProxies) // parley serve refuses a bad list at start
	if err != nil {
		s.log.Warn("ignoring the trusted proxies", "err", err)
	}
	s.proxies = proxies
	if s.emailLink() {
		s.auth = verifiedOnly{s.auth}
		if s.mailer == nil || s.signIns == nil {
			s.log.Warn("sign-in by email link has no mailer or link store; nobody can sign in")
		}
	}
}
