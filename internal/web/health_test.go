package web

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"parley/internal/chat"
	"parley/internal/membus"
)

func TestHealthAndReadiness(t *testing.T) {
	e := newWSEnv(t, Config{})
	get := func(path string) (int, string, http.Header) {
		resp, err := http.Get(e.ts.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), resp.Header
	}
	if code, body, h := get("/healthz"); code != 200 || body != "ok\n" || h.Get("X-Content-Type-Options") != "nosniff" {
		t.Fatalf("/healthz: %d %q", code, body)
	}
	if code, body, _ := get("/readyz"); code != 200 {
		t.Fatalf("/readyz: %d %q", code, body)
	}
	// The bus is down: chats go on through the store, so the replica stays ready and
	// says which part is degraded.
	_ = e.srv.broker.Close()
	if code, body, _ := get("/readyz"); code != http.StatusOK || body != "degraded: broker\n" {
		t.Fatalf("/readyz with the broker down: %d %q", code, body)
	}
	// A store that is down takes the replica out of service, named.
	e.srv.sessions = downSessions{e.srv.sessions}
	if code, body, _ := get("/readyz"); code != http.StatusServiceUnavailable || !strings.HasPrefix(body, "unavailable: sessions") {
		t.Fatalf("/readyz with the session store down: %d %q", code, body)
	}
}

// downSessions is a session store that does not answer its pings.
type downSessions struct{ chat.SessionStore }

func (downSessions) Ping(context.Context) error { return chat.Errorf(chat.EUnavailable, "down") }

func TestReadyzMissingBackends(t *testing.T) {
	s := NewServer(Deps{Broker: membus.New()})
	w := httptest.NewRecorder()
	s.ServeHTTP(w, httptest.NewRequest("GET", "/readyz", nil))
	if w.Code != http.StatusServiceUnavailable || !strings.Contains(w.Body.String(), "sessions, messages") {
		t.Fatalf("%d %q", w.Code, w.Body.String())
	}
}

func TestWriteErrorStatus(t *testing.T) {
	s := NewServer(Deps{})
	tests := []struct {
		name string
		err  error
		code int
		body string
	}{
		{"Invalid", chat.Errorf(chat.EInvalid, "bad room"), 400, "bad room"},
		{"NotFound", chat.Errorf(chat.ENotFound, "no such chat"), 404, "no such chat"},
		{"NotAllowed", chat.Errorf(chat.ENotAllowed, "not yours"), 403, "not yours"},
		{"RoomFull", chat.Errorf(chat.ERoomFull, "full"), 409, "full"},
		{"RateLimited", chat.Errorf(chat.ERateLimited, "slow down"), 429, "slow down"},
		{"Unavailable", chat.Errorf(chat.EUnavailable, "db down"), 503, "db down"},
		{"Internal", context.DeadlineExceeded, 500, "Something went wrong"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := httptest.NewRecorder()
			s.writeError(w, httptest.NewRequest("GET", "/x", nil), tt.err)
			if w.Code != tt.code || !strings.Contains(w.Body.String(), tt.body) {
				t.Fatalf("%d %q", w.Code, w.Body.String())
			}
		})
	}
}

// stuckBroker is a broker whose Ping never returns, not even when its context ends,
// like a client stuck on a Redis stopped with SIGSTOP.
type stuckBroker struct {
	*membus.Bus
	release chan struct{}
}

func (b stuckBroker) Ping(context.Context) error { <-b.release; return nil }

// TestReadyzHungBroker: /readyz answers 200 within 3 s with a broker that hangs,
// naming it degraded, and still says the stores are fine.
func TestReadyzHungBroker(t *testing.T) {
	e := newWSEnv(t, Config{})
	b := stuckBroker{Bus: membus.New(), release: make(chan struct{})}
	defer close(b.release)
	e.srv.broker = b
	start := time.Now()
	w := httptest.NewRecorder()
	e.srv.ServeHTTP(w, httptest.NewRequest("GET", "/readyz", nil))
	if took := time.Since(start); took > 3*time.Second {
		t.Fatalf("/readyz took %v", took)
	}
	if body := w.Body.String(); w.Code != http.StatusOK || body != "degraded: broker\n" {
		t.Fatalf("/readyz with a hung broker: %d %q", w.Code, body)
	}
}
