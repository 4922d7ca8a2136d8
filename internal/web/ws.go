package web

import (
	"net/http"
)

// wsConn is one open WebSocket.
type wsConn struct{}

// goAway closes the connection with StatusGoingAway.
func (c *wsConn) goAway() {}

// handleWS serves GET /rooms/{room}/ws: the live chat of the room.
func (s *Server) handleWS() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "not implemented yet", http.StatusNotImplemented)
	})
}
