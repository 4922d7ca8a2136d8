package web

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"parley/internal/chat"
)

// Pages that need a signed-in person send a visitor without one to the sign-in page,
// which remembers the page asked for (?next=) and, once the emailed link is followed,
// continues there. Only a path on this site among the pages that need signing in is
// ever followed, so the parameter cannot send anyone elsewhere (no open redirect).

// maxNextLen bounds a return path (a transcript path is about 50 characters).
const maxNextLen = 512

// safeNext returns next when it is a local path Parley may send a person back to
// after signing in (a room, a transcript, the history page), else "".
func safeNext(next string) string {
	if next == "" || len(next) > maxNextLen || !strings.HasPrefix(next, "/") ||
		strings.HasPrefix(next, "//") || strings.ContainsAny(next, "\\\r\n\t") {
		return ""
	}
	u, err := url.Parse(next)
	if err != nil || u.Scheme != "" || u.Host != "" || u.User != nil || u.Fragment != "" {
		return ""
	}
	switch {
	case u.Path == "/history" && (u.RawQuery == "" || strings.HasPrefix(u.RawQuery, "email=")):
	case strings.HasPrefix(u.Path, "/rooms/") && u.RawQuery == "":
		if chat.ValidateRoom(strings.TrimPrefix(u.Path, "/rooms/")) != nil {
			return ""
		}
	case strings.HasPrefix(u.Path, "/transcripts/") && u.RawQuery == "":
		if !validSessionID(strings.TrimPrefix(u.Path, "/transcripts/")) {
			return ""
		}
	default:
		return ""
	}
	return u.String()
}

// signInFirst sends a visitor who is not signed in to the sign-in page, to come back
// to this request's page afterwards.
func (s *Server) signInFirst(w http.ResponseWriter, r *http.Request) {
	to := "/signin"
	if next := safeNext(r.URL.RequestURI()); next != "" {
		to += "?next=" + url.QueryEscape(next)
	}
	http.Redirect(w, r, to, http.StatusSeeOther)
}

// signInPage is the data of templates/signin.html.
type signInPage struct {
	layoutData
	Next  string // the page to return to
	What  string // what that page is, in words
	Email string
	Error string
}

// describeNext names the page a return path leads to, for the sign-in page.
func describeNext(next string) string {
	switch {
	case strings.HasPrefix(next, "/transcripts/"):
		return "download the transcript"
	case strings.HasPrefix(next, "/rooms/"):
		return "open the room " + strings.TrimPrefix(next, "/rooms/")
	case strings.HasPrefix(next, "/history"):
		return "see your chat history"
	}
	return "continue"
}

// handleSignInGet serves GET /signin: with a token (an older link form) the "press
// to sign in" page; otherwise the sign-in page, which asks for an email and sends a
// link that returns to ?next=. Someone already signed in goes straight there.
func (s *Server) handleSignInGet() http.Handler {
	link := s.handleSignInLink()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Has("token") {
			link.ServeHTTP(w, r)
			return
		}
		next := safeNext(r.URL.Query().Get("next"))
		viewer, signedIn := s.currentEmail(r)
		if signedIn && next != "" {
			http.Redirect(w, r, next, http.StatusSeeOther)
			return
		}
		email, _ := chat.NormalizeEmail(r.URL.Query().Get("email"))
		s.render(w, r, http.StatusOK, "signin", signInPage{
			layoutData: layoutData{Viewer: viewer}, Next: next, What: describeNext(next), Email: email,
		})
	})
}

// handleSignInEmail serves POST /signin/email (fields email, next, tz): it signs the
// person in (trust sign-in) or emails them a link that returns to next.
func (s *Server) handleSignInEmail() http.Handler {
	return s.formGuard(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.Body = http.MaxBytesReader(w, r.Body, 8<<10)
		next := safeNext(r.PostFormValue("next"))
		typed := strings.TrimSpace(r.PostFormValue("email"))
		email, err := chat.NormalizeEmail(typed)
		if err != nil {
			viewer, _ := s.currentEmail(r)
			s.render(w, r, http.StatusBadRequest, "signin", signInPage{
				layoutData: layoutData{Viewer: viewer}, Next: next, What: describeNext(next),
				Email: typed, Error: chat.ErrorMessage(err),
			})
			return
		}
		to := next
		if to == "" {
			to = "/history"
		}
		if !s.emailLink() {
			if err := s.signIn(w, r, email); err != nil {
				s.renderError(w, r, err)
				return
			}
			s.rememberZone(r, email)
			http.Redirect(w, r, to, http.StatusSeeOther)
			return
		}
		if id, ok := s.currentIdentity(r); ok && id.Verified && id.Email == email {
			http.Redirect(w, r, to, http.StatusSeeOther)
			return
		}
		s.sendSignInLinkTo(w, r, "", email, next)
	}))
}

// signInPath is the path of an emailed sign-in link: the token, and, for the page
// shown if the link turns out used or expired, the address it went to and where it
// leads. Only the token signs anyone in.
func signInPath(token, email, room, next string) string {
	q := url.Values{}
	if next != "" {
		q.Set("next", next)
	} else if room != "" {
		q.Set("room", room)
	}
	if email != "" {
		q.Set("email", email)
	}
	if len(q) == 0 {
		return "/signin/" + token
	}
	return "/signin/" + token + "?" + q.Encode()
}

// afterSignIn returns where a person goes once their link is used: the page they
// asked for, or the room they joined, whose chat they then enter (a join is the
// explicit "start or join the chat here"; a full room is told on the room page).
func (s *Server) afterSignIn(r *http.Request, email, room string) string {
	if next := safeNext(r.PostFormValue("next")); next != "" {
		return next
	}
	if chat.ValidateRoom(room) != nil {
		return "/"
	}
	if _, _, err := s.sessions.Enter(r.Context(), room, email, chat.Now()); err != nil && !chat.IsCode(err, chat.ERoomFull) {
		s.logError(r, err)
	}
	return roomPath(room)
}

// signInAgainPage is the data of templates/signin_again.html.
type signInAgainPage struct {
	layoutData
	Email string
	Room  string
	Next  string
	What  string
}

// linkUsedUp answers a sign-in link that is unknown, used or expired (one answer for
// all, so it tells nothing about which): in plain words, with a button that sends a
// new link to the same address for the same place.
func (s *Server) linkUsedUp(w http.ResponseWriter, r *http.Request) {
	viewer, _ := s.currentEmail(r)
	email, _ := chat.NormalizeEmail(r.PostFormValue("email"))
	next := safeNext(r.PostFormValue("next"))
	room, _ := chat.NormalizeRoom(r.PostFormValue("room"))
	p := signInAgainPage{layoutData: layoutData{Viewer: viewer}, Email: email, Room: room, Next: next, What: describeNext(next)}
	s.render(w, r, http.StatusNotFound, "signin_again", p)
}

// allowSignInEmail takes one sign-in email from the per-client and per-address limits,
// or says, truthfully, what the limit is and when the next email can be sent.
func (s *Server) allowSignInEmail(r *http.Request, email string) error {
	ip := s.clientIP(r)
	if !s.limits.signInsPerIP.allow(ip) {
		return chat.Errorf(chat.ERateLimited, "This network asked for %d sign-in emails within the last hour, the most Parley sends. "+
			"Links already sent still work for %d minutes each; a new one can be asked for in %s.",
			s.limits.signInsPerIP.burst, int(chat.SignInTTL/time.Minute), roundWait(s.limits.signInsPerIP.retryIn(ip)))
	}
	if !s.limits.signInsPerEmail.allow(email) {
		return chat.Errorf(chat.ERateLimited, "%d sign-in emails went to %s within the last hour, the most Parley sends to one address. "+
			"Links already sent still work for %d minutes each; a new one can be asked for in %s.",
			s.limits.signInsPerEmail.burst, email, int(chat.SignInTTL/time.Minute), roundWait(s.limits.signInsPerEmail.retryIn(email)))
	}
	return nil
}

// roundWait says a wait in whole minutes, rounded up ("1 minute", "12 minutes").
func roundWait(d time.Duration) string {
	m := int((d + time.Minute - 1) / time.Minute)
	if m <= 1 {
		return "about a minute"
	}
	return fmt.Sprintf("about %d minutes", m)
}

// roomParam returns a room name from a query, normalized, or "".
func roomParam(v string) string {
	room, err := chat.NormalizeRoom(v)
	if err != nil {
		return ""
	}
	return room
}
