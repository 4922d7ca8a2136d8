package web

import (
	"context"
	"net/http"
	"strings"
	"time"
)

// readyTimeout bounds how long /readyz waits for a backend before calling it down.
const readyTimeout = 3 * time.Second

// handleHealthz answers 200 while the process can serve HTTP at all.
func (s *Server) handleHealthz() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		_, _ = w.Write([]byte("ok\n"))
	})
}

// handleReadyz pings every backend a request needs, so a load balancer stops sending
// traffic to a replica that cannot serve it. The body names what failed, never why
// in detail (errors may carry addresses or credentials; they go to the log).
func (s *Server) handleReadyz() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), readyTimeout)
		defer cancel()
		failed := s.pingBackends(ctx)
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		if len(failed) > 0 {
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte("unavailable: " + strings.Join(failed, ", ") + "\n"))
			return
		}
		_, _ = w.Write([]byte("ready\n"))
	})
}

// pingBackends pings each backend and returns the names of those that failed.
func (s *Server) pingBackends(ctx context.Context) []string {
	checks := []struct {
		name string
		p    pinger
	}{
		{"sessions", s.sessions},
		{"messages", s.messages},
		{"broker", s.broker},
	}
	var failed []string
	for _, c := range checks {
		if c.p == nil {
			failed = append(failed, c.name)
			continue
		}
		if err := c.p.Ping(ctx); err != nil {
			s.log.Warn("readiness check failed", "backend", c.name, "err", err)
			failed = append(failed, c.name)
		}
	}
	return failed
}

// pinger is what every backend offers for readiness checks.
type pinger interface{ Ping(context.Context) error }
