package web

import (
	"context"
	"net/http"
	"strings"
	"time"
)

// readyTimeout bounds how long /readyz waits for a backend before calling it down.
const readyTimeout = 2500 * time.Millisecond

// handleHealthz answers 200 while the process can serve HTTP at all.
func (s *Server) handleHealthz() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		_, _ = w.Write([]byte("ok\n"))
	})
}

// handleReadyz pings every backend a request needs, so a load balancer stops sending
// traffic to a replica that cannot serve it. A store that fails (sessions, messages)
// makes it 503 "unavailable: …": nothing can be served without it. A broker that
// fails (Redis, which also keeps presence) leaves it 200 "degraded: broker": chats go
// on, acknowledged and stored, and reach the other replicas from the store within a
// health check or two, so taking the replica out of service would cost more than it
// saves. The body names what failed, never why in detail (errors may carry addresses
// or credentials; they go to the log). It answers within readyTimeout.
func (s *Server) handleReadyz() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), readyTimeout)
		defer cancel()
		failed, degraded := s.pingBackends(ctx)
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		var parts []string
		if len(failed) > 0 {
			parts = append(parts, "unavailable: "+strings.Join(failed, ", "))
		}
		if len(degraded) > 0 {
			parts = append(parts, "degraded: "+strings.Join(degraded, ", "))
		}
		if len(failed) > 0 {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		if len(parts) == 0 {
			parts = []string{"ready"}
		}
		_, _ = w.Write([]byte(strings.Join(parts, "; ") + "\n"))
	})
}

// pingBackends pings the backends side by side and returns the names of those that
// failed or did not answer before ctx ends: the ones a replica cannot serve without
// (failed), and those it serves chats without, less well (degraded). A hung backend
// (a Redis stopped with SIGSTOP, whose client may ignore the deadline) costs /readyz
// readyTimeout at most, and the others are still named correctly.
func (s *Server) pingBackends(ctx context.Context) (failed, degraded []string) {
	checks := []struct {
		name     string
		p        pinger
		optional bool // chats go on without it
	}{
		{"sessions", s.sessions, false},
		{"messages", s.messages, false},
		{"broker", s.broker, true},
	}
	type result struct {
		i  int
		ok bool
	}
	results := make(chan result, len(checks))
	pending := 0
	for i, c := range checks {
		if c.p == nil {
			continue
		}
		pending++
		go func() {
			err := c.p.Ping(ctx)
			if err != nil {
				s.log.Warn("readiness check failed", "backend", c.name, "err", err)
			}
			results <- result{i, err == nil}
		}()
	}
	ok := make([]bool, len(checks))
	deadline := time.NewTimer(readyTimeout)
	defer deadline.Stop()
	for ; pending > 0; pending-- {
		select {
		case r := <-results:
			ok[r.i] = r.ok
			continue
		case <-ctx.Done():
		case <-deadline.C:
		}
		break
	}
	for i, c := range checks {
		switch {
		case ok[i]:
		case c.optional:
			degraded = append(degraded, c.name)
		default:
			failed = append(failed, c.name)
		}
	}
	return failed, degraded
}

// pinger is what every backend offers for readiness checks.
type pinger interface{ Ping(context.Context) error }
