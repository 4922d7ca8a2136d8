package web

import "net/http"

// routes lists every route Parley serves, in one place, with Go 1.22 patterns.
func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /{$}", s.handleHome())
	mux.Handle("POST /join", s.limitJoins(s.handleJoin()))
	mux.Handle("GET /rooms/{room}", s.handleRoom())
	mux.Handle("GET /rooms/{room}/ws", s.limitConns(s.handleWS()))
	mux.Handle("GET /history", s.handleHistory())
	mux.Handle("POST /signout", s.handleSignOut())
	mux.Handle("POST /signout/everywhere", s.handleSignOutEverywhere())
	mux.Handle("GET /signin", s.handleSignInGet())
	mux.Handle("POST /signin/email", s.limitJoins(s.handleSignInEmail()))
	mux.Handle("GET /signin/{token}", s.handleSignInLink())
	mux.Handle("POST /signin", s.handleSignIn())
	mux.Handle("GET /static/", s.handleStatic())
	mux.Handle("GET /transcripts/{session}", s.handleTranscript())
	mux.Handle("GET /dev/mail", s.devOnly(s.handleDevMail()))
	mux.Handle("GET /dev/mail.json", s.devOnly(s.handleDevMailJSON()))
	mux.Handle("GET /dev/mail/{name}", s.devOnly(s.handleDevMailMessage()))
	mux.Handle("GET /healthz", s.handleHealthz())
	mux.Handle("GET /readyz", s.handleReadyz())
	return mux
}

// devOnly serves next only in development mode; elsewhere the route does not exist.
func (s *Server) devOnly(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !s.cfg.Dev {
			http.NotFound(w, r)
			return
		}
		next.ServeHTTP(w, r)
	})
}
