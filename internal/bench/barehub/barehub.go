// Package barehub is the floor Parley's benchmarks are compared against: a WebSocket
// hub that relays every text frame a client sends to every client of its room, the
// sender included, byte for byte. It stores nothing, signs nobody in, checks nothing
// and parses no JSON; what it costs per delivery is about the least any WebSocket
// chat server in Go can cost, so Parley's throughput as a ratio of it says how much
// storage, sign-in and the protocol add.
//
// A client opens GET /ws?room=NAME; once it is a member of the room the hub sends it
// {"type":"welcome"}, so a client knows from then on it gets every frame sent there.
// Each connection has one goroutine reading its frames; a frame is written to each
// member by the reading goroutine itself, one write(2) per member under that
// member's lock, with no queue and no goroutine hand-off.
package barehub

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/gobwas/ws"
)

const (
	readBufSize = 4096
	maxFrame    = 64 << 10 // larger frames close the connection
)

var welcome = ws.MustCompileFrame(ws.NewTextFrame([]byte(`{"type":"welcome"}`)))

// Hub is an http.Handler serving the hub at /ws.
type Hub struct {
	mu    sync.Mutex
	rooms map[string]*room
}

type room struct {
	mu      sync.Mutex
	members []*conn
}

type conn struct {
	mu sync.Mutex // one writer at a time
	nc net.Conn
}

// list returns the room's members; the slice is never changed, only replaced.
func (rm *room) list() []*conn {
	rm.mu.Lock()
	defer rm.mu.Unlock()
	return rm.members
}

// New returns an empty hub.
func New() *Hub { return &Hub{rooms: make(map[string]*room)} }

// ServeHTTP upgrades GET /ws?room=NAME and relays the connection's frames until it
// closes.
func (h *Hub) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	name := r.URL.Query().Get("room")
	if r.URL.Path != "/ws" || name == "" {
		http.Error(w, "want GET /ws?room=NAME", http.StatusNotFound)
		return
	}
	nc, rw, _, err := ws.UpgradeHTTP(r, w)
	if err != nil {
		return
	}
	var rd io.Reader = nc
	if rw != nil && rw.Reader.Buffered() > 0 { // frames sent right behind the handshake
		early, _ := rw.Reader.Peek(rw.Reader.Buffered())
		rd = io.MultiReader(bytes.NewReader(bytes.Clone(early)), nc)
	}
	c := &conn{nc: nc}
	rm := h.join(name, c)
	defer h.leave(name, rm, c)
	if c.write(welcome) != nil {
		return
	}
	c.relay(rm, rd)
}

func (h *Hub) join(name string, c *conn) *room {
	h.mu.Lock()
	rm := h.rooms[name]
	if rm == nil {
		rm = &room{}
		h.rooms[name] = rm
	}
	rm.mu.Lock()
	rm.members = append(slices.Clip(rm.members), c) // a new slice: relay reads the old one unlocked
	rm.mu.Unlock()
	h.mu.Unlock()
	return rm
}

func (h *Hub) leave(name string, rm *room, c *conn) {
	_ = c.nc.Close()
	h.mu.Lock()
	defer h.mu.Unlock()
	rm.mu.Lock()
	defer rm.mu.Unlock()
	if i := slices.Index(rm.members, c); i >= 0 {
		rm.members = slices.Delete(slices.Clone(rm.members), i, i+1)
	}
	if len(rm.members) == 0 {
		delete(h.rooms, name)
	}
}

// write sends one frame. There is no write deadline (a timer per frame): a member
// that stops reading holds up its room, which the benchmark never does.
func (c *conn) write(frame []byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, err := c.nc.Write(frame)
	return err
}

// relay reads frames until the connection ends; each text or binary frame goes,
// unmasked and re-framed once, to every member of rm.
func (c *conn) relay(rm *room, rd io.Reader) {
	br := bufio.NewReaderSize(rd, readBufSize)
	var out []byte
	for {
		hdr, err := ws.ReadHeader(br)
		if err != nil || hdr.Length > maxFrame || !hdr.Fin {
			return
		}
		n := int(hdr.Length)
		// The frame sent on: a server header (at most 4 bytes for maxFrame), then the payload.
		out = slices.Grow(out[:0], 4+n)[:0]
		out = appendHeader(out, hdr.OpCode, n)
		start := len(out)
		out = out[:start+n]
		if _, err := io.ReadFull(br, out[start:]); err != nil {
			return
		}
		if hdr.Masked {
			ws.Cipher(out[start:], hdr.Mask, 0)
		}
		switch hdr.OpCode {
		case ws.OpText, ws.OpBinary:
			for _, m := range rm.list() {
				_ = m.write(out)
			}
		case ws.OpPing:
			out[0] = 0x80 | byte(ws.OpPong)
			if c.write(out) != nil {
				return
			}
		case ws.OpClose:
			_ = c.write(ws.CompiledCloseNormalClosure)
			return
		}
	}
}

// appendHeader appends an unmasked, final frame header of op for n payload bytes.
func appendHeader(b []byte, op ws.OpCode, n int) []byte {
	b = append(b, 0x80|byte(op))
	if n <= 125 {
		return append(b, byte(n))
	}
	return append(b, 126, byte(n>>8), byte(n))
}

// Serve serves a new hub on ln until ctx ends.
func Serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{Handler: New(), ReadHeaderTimeout: 10 * time.Second}
	stop := context.AfterFunc(ctx, func() { _ = srv.Close() })
	defer stop()
	err := srv.Serve(ln)
	if ctx.Err() != nil && errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}
