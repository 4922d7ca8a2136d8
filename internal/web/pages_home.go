package web

import (
	"net/http"

	"parley/internal/chat"
)

// homePage is the data of templates/home.html: the join form (with what was typed and
// why it was refused, when it was) and the history search.
type homePage struct {
	layoutData
	Room  string
	Email string
	Error string
}

// handleHome serves GET /: the join form, prefilled with ?room= (a shared link or a
// room page that sent someone here to sign in) and the signed-in email.
func (s *Server) handleHome() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		viewer, _ := s.currentEmail(r)
		room, err := chat.NormalizeRoom(r.URL.Query().Get("room"))
		if err != nil {
			room = "" // never echo a name the form would refuse anyway
		}
		s.render(w, r, http.StatusOK, "home", homePage{
			layoutData: layoutData{Viewer: viewer}, Room: room, Email: viewer,
		})
	})
}
