package web

import (
	"context"
	"net/http"
	"net/url"
	"strings"

	"parley/internal/chat"
)

// handleJoin serves POST /join (form fields room and email): a valid form signs the
// person in and sends them to the room; an invalid one shows the form again, 400, with
// what was typed and the reason. A join is the explicit "start or join the chat here":
// once the person is signed in it enters the room's chat (starting a new one when the
// room has none in progress), which merely visiting a room never does.
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
			s.joinRefused(w, r, http.StatusBadRequest, room, typed, err)
			return
		}
		s.admitToRoom(w, r, room, email)
	}))
}

// joinRefused shows the join form again with what was typed and why it was refused.
func (s *Server) joinRefused(w http.ResponseWriter, r *http.Request, status int, room, email string, err error) {
	viewer, _ := s.currentEmail(r)
	s.render(w, r, status, "home", homePage{
		layoutData: layoutData{Viewer: viewer},
		Room:       room, Email: strings.TrimSpace(email), Error: chat.ErrorMessage(err),
	})
}

// admitToRoom is what a valid join form leads to. A room whose chat already has two
// other people says so at once, before any sign-in email is sent. With trust sign-in
// the typed email is believed; with sign-in by emailed link, a person not yet proven
// gets "check your email" instead (signin.go). A signed-in person enters the chat and
// goes to the room.
func (s *Server) admitToRoom(w http.ResponseWriter, r *http.Request, room, email string) {
	if err := s.seatFor(r.Context(), room, email); err != nil {
		s.joinRefused(w, r, httpStatus(chat.ErrorCode(err)), room, email, err)
		return
	}
	if !s.admitVerified(w, r, room, email) {
		return
	}
	if _, _, err := s.sessions.Enter(r.Context(), room, email, chat.Now()); err != nil {
		if chat.IsCode(err, chat.ERoomFull) {
			err = errRoomTaken(room)
		}
		s.joinRefused(w, r, httpStatus(chat.ErrorCode(err)), room, email, err)
		return
	}
	http.Redirect(w, r, roomPath(room), http.StatusSeeOther)
}

// errRoomTaken is the answer to a third person.
func errRoomTaken(room string) error {
	return chat.Errorf(chat.ERoomFull, "The chat in room %s already has two people. Choose another room name, or try again once they have ended their chat.", room)
}

// seatFor tells whether email could enter the room's chat now: ERoomFull when its
// chat in progress has two other people. It starts nothing.
func (s *Server) seatFor(ctx context.Context, room, email string) error {
	sess, err := s.sessions.InProgress(ctx, room)
	if chat.IsCode(err, chat.ENotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if sess.Full() && sess.RoleOf(email) == chat.RoleNone {
		return errRoomTaken(room)
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
// loginCacheTTL, and close their open WebSockets at the next ping's sign-in check
// (wsConn.keepAlive).
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
