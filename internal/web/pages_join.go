package web

import (
	"net/http"
	"net/url"
	"strings"

	"parley/internal/chat"
)

// handleJoin serves POST /join (form fields room and email): a valid form signs the
// person in and sends them to the room; an invalid one shows the form again, 400, with
// what was typed and the reason. Whether the room is full is not checked here: the
// WebSocket tells, because the room may fill or free up before the page loads.
func (s *Server) handleJoin() http.Handler {
	return s.formGuard(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.Body = http.MaxBytesReader(w, r.Body, 8<<10)
		typedRoom := strings.TrimSpace(r.PostFormValue("room"))
		typed := r.PostFormValue("email")
		email, err := chat.NormalizeEmail(typed)
		room, rerr := chat.NormalizeRoom(typedRoom)
		if rerr != nil {
			room, err = typedRoom, rerr // the room is the first field of the form, so its reason comes first
		}
		if err != nil {
			viewer, _ := s.currentEmail(r)
			s.render(w, r, http.StatusBadRequest, "home", homePage{
				layoutData: layoutData{Viewer: viewer},
				Room:       room, Email: strings.TrimSpace(typed), Error: chat.ErrorMessage(err),
			})
			return
		}
		s.admitToRoom(w, r, room, email)
	}))
}

// admitToRoom is what a valid join form leads to. With trust sign-in the typed email
// is believed: the cookie is set and the person goes to the room. With sign-in by
// emailed link, a person not yet proven gets "check your email" instead (signin.go).
func (s *Server) admitToRoom(w http.ResponseWriter, r *http.Request, room, email string) {
	if !s.admitVerified(w, r, room, email) {
		return
	}
	if err := s.startChat(r, room, email); err != nil {
		s.renderError(w, r, err)
		return
	}
	http.Redirect(w, r, roomPath(room), http.StatusSeeOther)
}

// startChat is what a join means: enter the room's chat in progress, or start a new
// one when the room has none (the person's earlier chat there has ended). Connecting
// to a room's WebSocket never starts a chat; it shows the person's latest one. A full
// room is not an error here: the room page says so, with a way out.
func (s *Server) startChat(r *http.Request, room, email string) error {
	_, _, err := s.sessions.Enter(r.Context(), room, email, chat.Now())
	if err != nil && !chat.IsCode(err, chat.ERoomFull) {
		s.log.Warn("cannot enter a chat on joining", "room", room, "code", chat.ErrorCode(err), "err", err)
		return err
	}
	return nil
}

// roomPath is the URL path of a room's page. Valid room names need no escaping, but
// the escaping keeps the function safe for any input.
func roomPath(room string) string { return "/rooms/" + url.PathEscape(room) }

// handleSignOut serves POST /signout: this browser's sign-in ends at once (a copy of
// the cookie is worth nothing from then on), the cookie is removed and the person
// goes home.
func (s *Server) handleSignOut() http.Handler {
	return s.formGuard(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := s.signOut(w, r); err != nil {
			s.log.Warn("cannot end a sign-in", "code", chat.ErrorCode(err), "err", err)
			s.renderError(w, r, chat.Errorf(chat.EUnavailable, "We could not sign you out just now. Please try again in a minute."))
			return
		}
		http.Redirect(w, r, "/", http.StatusSeeOther)
	}))
}

// handleSignOutEverywhere serves POST /signout/everywhere (the history page's "Sign
// out everywhere"): every sign-in of the person ends, on every browser, and their
// WebSockets on this replica are closed, so their pages reconnect and find
// themselves signed out. Other replicas stop believing the sign-ins within
// loginCacheTTL; their open WebSockets end when they next reconnect.
func (s *Server) handleSignOutEverywhere() http.Handler {
	return s.formGuard(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		email, ok := s.currentEmail(r)
		if ok {
			if _, err := s.auth.revokeAll(r.Context(), email); err != nil {
				s.log.Warn("cannot end sign-ins", "code", chat.ErrorCode(err), "err", err)
				s.renderError(w, r, chat.Errorf(chat.EUnavailable, "We could not sign you out everywhere just now. Please try again in a minute."))
				return
			}
			s.closeConnsOf(email)
		}
		if err := s.signOut(w, r); err != nil {
			s.log.Warn("cannot end a sign-in", "code", chat.ErrorCode(err), "err", err)
		}
		http.Redirect(w, r, "/", http.StatusSeeOther)
	}))
}
