package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// client is one simulated person: signed in to a room, with one WebSocket. One
// goroutine per client does everything on its connection: in a chat it writes a
// message, then reads frames (its peer's messages, acks, its own message coming back)
// until its own message is back, and so on (see sender.go); afterwards, and in idle
// mode, it only reads. No frame is handed to another goroutine, so a delivery costs
// no goroutine wake beyond the network poller's.
type client struct {
	site            *site
	cnt             *counters
	room, email     string
	peerEmail       string
	prefix          string // ids of this client's messages: prefix + n
	peerPrefix      string
	cookie          string
	mu              sync.Mutex // guards swapping ws against abort and close
	ws              *wsConn    // read and written by the client's goroutine only
	deadline        time.Time  // the read deadline set on ws (zero: none); owner only
	closing         atomic.Bool
	aborted         atomic.Bool
	welcomed        bool
	stats           clientStats
	maxOwn, maxPeer atomic.Int64 // highest message numbers received, for the drain
	got             ledger       // owned by the client's goroutine until it ends
	refused         map[int]bool // owned by the client's goroutine
	acked           map[int]bool // message numbers the server acknowledged; owned likewise
	sent            int          // owned by the client's goroutine
	frame           frame        // the frame being handled
	cmdID           int          // Centrifugo: the last command id used
}

// event is what one frame means to the client's closed loop.
type event struct {
	own    int    // an own message that came back: its number; 0 for none
	failed bool   // an error frame: the server refused something
	code   string // its code
}

// newClient prepares side ("a" or "b") of room i of run id.
func newClient(s *site, cnt *counters, runID string, i int, side string) *client {
	peer := "b"
	if side == "b" {
		peer = "a"
	}
	room := fmt.Sprintf("bench-%s-%d", runID, i)
	c := &client{
		site: s, cnt: cnt, room: room,
		email:      room + "-" + side + "@bench.test",
		peerEmail:  room + "-" + peer + "@bench.test",
		prefix:     fmt.Sprintf("%s-%d-%s-", runID, i, side),
		peerPrefix: fmt.Sprintf("%s-%d-%s-", runID, i, peer),
		refused:    make(map[int]bool),
		acked:      make(map[int]bool),
		cmdID:      centrifugoSubscribeID,
	}
	cnt.register(&c.stats)
	return c
}

// connect signs in, opens the WebSocket and reads until the welcome frame, on the
// caller's goroutine; frames behind the welcome stay buffered for the client's own.
func (c *client) connect(ctx context.Context) error {
	if c.site.proto == ProtoParley {
		cookie, err := c.site.join(ctx, c.room, c.email)
		if err != nil {
			return err
		}
		c.cookie = cookie
	}
	ws, err := c.site.dial(ctx, c.room, c.cookie, -1)
	if err != nil {
		return err
	}
	if !c.swap(ws) {
		return &codedError{code: "no_welcome", err: errors.New("closed before the welcome frame")}
	}
	stop := context.AfterFunc(ctx, c.abort)
	defer stop()
	if !c.setDeadline(time.Now().Add(welcomeWait)) {
		return ctx.Err()
	}
	for !c.welcomed {
		if _, err := c.next(); err != nil {
			switch {
			case ctx.Err() != nil:
				return ctx.Err()
			case isTimeout(err):
				return &codedError{code: "no_welcome", err: fmt.Errorf("no welcome frame within %v", welcomeWait)}
			}
			return &codedError{code: "no_welcome", err: fmt.Errorf("connection closed before the welcome frame: %w", err)}
		}
	}
	if !stop() || !c.setDeadline(time.Time{}) {
		return ctx.Err()
	}
	return nil
}

// swap makes ws the client's connection, unless the client was closed or aborted
// meanwhile (then ws is closed). Only the client's goroutine (or connect, before it
// starts) calls it.
func (c *client) swap(ws *wsConn) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopped() {
		_ = ws.nc.Close()
		return false
	}
	c.ws, c.deadline = ws, time.Time{}
	return true
}

// stopped reports whether close or abort was called: the client's goroutine ends.
func (c *client) stopped() bool { return c.closing.Load() || c.aborted.Load() }

// close ends the connection without waiting for the server's close frame.
func (c *client) close() {
	c.closing.Store(true)
	c.mu.Lock()
	if c.ws != nil {
		_ = c.ws.nc.Close()
	}
	c.mu.Unlock()
}

// abort wakes the client's goroutine from any read or write, to end: the run is over.
func (c *client) abort() {
	c.aborted.Store(true)
	c.mu.Lock()
	if c.ws != nil {
		_ = c.ws.nc.SetDeadline(aLongTimeAgo)
	}
	c.mu.Unlock()
}

// setDeadline sets the read deadline (zero: none). It reports false when the client
// was aborted: abort's deadline must not be overwritten, so the caller ends.
func (c *client) setDeadline(t time.Time) bool {
	_ = c.ws.nc.SetReadDeadline(t)
	c.deadline = t
	return !c.aborted.Load()
}

// armDeadline makes sure a read deadline fires by t. An earlier one is left alone (it
// fires early, and the caller sets the next), so most messages set none: setting a
// deadline reprograms a runtime timer, which the closed loop need not pay per message.
func (c *client) armDeadline(t time.Time) bool {
	if c.deadline.IsZero() || c.deadline.After(t) {
		return c.setDeadline(t)
	}
	return true
}

func isTimeout(err error) bool { return errors.Is(err, os.ErrDeadlineExceeded) }

// next reads and records one text message.
func (c *client) next() (event, error) {
	for {
		op, p, err := c.ws.readMessage()
		if err != nil {
			return event{}, err
		}
		if op == opText {
			return c.handle(p), nil
		}
	}
}

// readUntilClosed records every frame until the client is closed or aborted,
// reconnecting with ?after= the highest seq seen if the server drops the connection.
func (c *client) readUntilClosed(ctx context.Context) {
	for {
		_, err := c.next()
		if err == nil {
			continue
		}
		if c.stopped() || ctx.Err() != nil {
			return
		}
		if isTimeout(err) { // a resend deadline left from the closed loop
			if !c.setDeadline(time.Time{}) {
				return
			}
			continue
		}
		if !c.reconnect(ctx) {
			return
		}
	}
}

// reconnect replaces a dropped connection, as a browser would, resuming after the
// highest seq received. It reports whether it succeeded.
func (c *client) reconnect(ctx context.Context) bool {
	if c.stopped() || ctx.Err() != nil {
		return false
	}
	c.cnt.addError("disconnected")
	_ = c.ws.nc.Close()
	for try := 0; try < maxReconnects; try++ {
		ws, err := c.site.dial(ctx, c.room, c.cookie, c.got.maxSeq())
		if err == nil {
			if !c.swap(ws) {
				return false
			}
			c.cmdID = centrifugoSubscribeID
			c.cnt.reconnects.Add(1)
			return true
		}
		c.cnt.addError(errorCode(err))
		if !sleepCtx(ctx, retryBackoff<<min(try, 5)) || c.stopped() {
			return false
		}
	}
	c.cnt.addError("gave_up")
	return false
}

// handle records one server frame and says what it means for the closed loop.
func (c *client) handle(data []byte) event {
	if c.site.proto == ProtoCentrifugo {
		return c.handleCentrifugo(data)
	}
	return c.handleParley(data)
}

// handleParley records one frame of Parley's protocol (the hub relays the same frames).
func (c *client) handleParley(data []byte) event {
	f := &c.frame
	if err := decodeFrame(data, f); err != nil {
		c.cnt.addError("bad_frame")
		return event{}
	}
	switch string(f.Type) {
	case "message":
		c.stats.deliveries.Add(1)
		c.got.seq(f.Seq)
		return event{own: c.message(f)}
	case "ack":
		c.stats.acks.Add(1)
		if n, ok := idNumber(f.ID, c.prefix); ok {
			c.acked[n] = true
		}
	case "error":
		code := string(f.Code)
		c.cnt.addError(code)
		return event{failed: true, code: code}
	case "welcome":
		if c.got.session == "" {
			c.got.session = string(f.Session)
		} else if string(f.Session) != c.got.session {
			c.cnt.addError("session_changed")
		}
		c.welcomed = true
	case "ended":
		c.cnt.addError("ended")
	}
	return event{}
}

// message files a message frame under own, peer or foreign; it returns the number of
// an own message, else 0.
func (c *client) message(f *frame) int {
	switch string(f.From) {
	case c.email:
		if n, ok := idNumber(f.ID, c.prefix); ok {
			c.got.ownMessage(n)
			storeMax(&c.maxOwn, int64(n))
			return n
		}
	case c.peerEmail:
		if n, ok := idNumber(f.ID, c.peerPrefix); ok {
			c.got.peerMessage(n)
			storeMax(&c.maxPeer, int64(n))
			return 0
		}
	}
	c.got.foreign++
	return 0
}

func storeMax(a *atomic.Int64, v int64) {
	if v > a.Load() {
		a.Store(v)
	}
}

// sleepCtx sleeps d unless ctx ends first; it reports whether it slept the whole time.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
