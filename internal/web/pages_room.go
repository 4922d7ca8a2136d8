package web

import (
	"net/http"
	"net/url"

	"parley/internal/chat"
)

// roomPage is the data of templates/room.html. Everything room.js needs is put in
// data- attributes: the CSP forbids inline script.
type roomPage struct {
	layoutData
	Room    string
	MaxText int
	ByeText string
}

// handleRoom serves GET /rooms/{room}: the chat page. Nobody signed in is sent to the
// home page with the room filled in. The page itself touches no store: entering the
// room (and being refused when it is full) happens on the WebSocket, which room.js
// opens at once.
func (s *Server) handleRoom() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		room, err := chat.NormalizeRoom(r.PathValue("room"))
		if err != nil {
			s.renderError(w, r, err)
			return
		}
		if room != r.PathValue("room") { // /rooms/DEMO2 is /rooms/demo2
			http.Redirect(w, r, roomPath(room), http.StatusMovedPermanently)
			return
		}
		email, ok := s.currentEmail(r)
		if !ok {
			http.Redirect(w, r, "/?room="+url.QueryEscape(room), http.StatusSeeOther)
			return
		}
		s.render(w, r, http.StatusOK, "room", roomPage{
			layoutData: layoutData{Viewer: email},
			Room:       room, MaxText: s.cfg.MaxText, ByeText: chat.ByeText,
		})
	})
}
