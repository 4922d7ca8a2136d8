package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
)

// arrival is one of a client's own messages coming back, for its sender loop.
type arrival struct {
	n  int
	at time.Time
}

// client is one simulated person: signed in to a room, with one WebSocket whose
// reader goroutine records every frame. In chat mode a sender loop (see sender.go)
// runs beside the reader.
type client struct {
	site            *site
	cnt             *counters
	room, email     string
	peerEmail       string
	prefix          string // ids of this client's messages: prefix + n
	peerPrefix      string
	cookie          string
	conn            atomic.Pointer[websocket.Conn]
	closing         atomic.Bool
	readerDone      chan struct{}
	welcome         chan struct{}
	own             chan arrival
	errs            chan string
	maxOwn, maxPeer atomic.Int64 // highest message numbers received, for the drain
	got             ledger       // owned by the reader until it ends
	refused         map[int]bool // owned by the sender
	sent            int          // owned by the sender
}

// newClient prepares side ("a" or "b") of room i of run id.
func newClient(s *site, cnt *counters, runID string, i int, side string) *client {
	peer := "b"
	if side == "b" {
		peer = "a"
	}
	room := fmt.Sprintf("bench-%s-%d", runID, i)
	return &client{
		site: s, cnt: cnt, room: room,
		email:      room + "-" + side + "@bench.test",
		peerEmail:  room + "-" + peer + "@bench.test",
		prefix:     fmt.Sprintf("%s-%d-%s-", runID, i, side),
		peerPrefix: fmt.Sprintf("%s-%d-%s-", runID, i, peer),
		readerDone: make(chan struct{}),
		welcome:    make(chan struct{}, 1),
		own:        make(chan arrival, 64),
		errs:       make(chan string, 64),
		refused:    make(map[int]bool),
	}
}

// connect signs in, opens the WebSocket, starts the reader under readCtx and waits for
// the welcome frame.
func (c *client) connect(ctx, readCtx context.Context) error {
	cookie, err := c.site.join(ctx, c.room, c.email)
	if err != nil {
		return err
	}
	c.cookie = cookie
	ws, err := c.site.dial(ctx, c.room, cookie, -1)
	if err != nil {
		return err
	}
	c.conn.Store(ws)
	go c.read(readCtx)
	t := time.NewTimer(welcomeWait)
	defer t.Stop()
	select {
	case <-c.welcome:
		return nil
	case <-c.readerDone:
		return &codedError{code: "no_welcome", err: errors.New("connection closed before the welcome frame")}
	case <-t.C:
		return &codedError{code: "no_welcome", err: fmt.Errorf("no welcome frame within %v", welcomeWait)}
	case <-ctx.Done():
		return ctx.Err()
	}
}

// close ends the connection without waiting for the server's close frame.
func (c *client) close() {
	c.closing.Store(true)
	if ws := c.conn.Load(); ws != nil {
		_ = ws.CloseNow()
	}
}

// read records every frame until ctx ends or close is called, reconnecting with
// ?after= the highest seq seen if the server drops the connection.
func (c *client) read(ctx context.Context) {
	defer close(c.readerDone)
	var buf bytes.Buffer
	var f frame
	for {
		typ, r, err := c.conn.Load().Reader(ctx)
		if err == nil {
			buf.Reset()
			_, err = buf.ReadFrom(r)
		}
		if err != nil {
			if c.closing.Load() || ctx.Err() != nil || !c.reconnect(ctx) {
				return
			}
			continue
		}
		if typ == websocket.MessageText {
			c.handle(buf.Bytes(), &f)
		}
	}
}

// reconnect replaces a dropped connection, as a browser would, resuming after the
// highest seq received. It reports whether it succeeded.
func (c *client) reconnect(ctx context.Context) bool {
	c.cnt.addError("disconnected")
	_ = c.conn.Load().CloseNow()
	for try := 0; try < maxReconnects; try++ {
		ws, err := c.site.dial(ctx, c.room, c.cookie, c.got.maxSeq())
		if err == nil {
			c.conn.Store(ws)
			c.cnt.reconnects.Add(1)
			return true
		}
		c.cnt.addError(errorCode(err))
		if !sleepCtx(ctx, retryBackoff<<min(try, 5)) || c.closing.Load() {
			return false
		}
	}
	c.cnt.addError("gave_up")
	return false
}

// handle records one server frame.
func (c *client) handle(data []byte, f *frame) {
	if err := decodeFrame(data, f); err != nil {
		c.cnt.addError("bad_frame")
		return
	}
	switch f.Type {
	case "message":
		c.cnt.deliveries.Add(1)
		c.got.seq(f.Seq)
		c.message(f)
	case "ack":
		c.cnt.acks.Add(1)
	case "error":
		c.cnt.addError(f.Code)
		select {
		case c.errs <- f.Code:
		default:
		}
	case "welcome":
		if c.got.session == "" {
			c.got.session = f.Session
		} else if f.Session != c.got.session {
			c.cnt.addError("session_changed")
		}
		select {
		case c.welcome <- struct{}{}:
		default:
		}
	case "ended":
		c.cnt.addError("ended")
	}
}

// message files a message frame under own, peer or foreign.
func (c *client) message(f *frame) {
	switch f.From {
	case c.email:
		if n, ok := idNumber(f.ID, c.prefix); ok {
			c.got.ownMessage(n)
			storeMax(&c.maxOwn, int64(n))
			select {
			case c.own <- arrival{n: n, at: time.Now()}:
			default:
			}
			return
		}
	case c.peerEmail:
		if n, ok := idNumber(f.ID, c.peerPrefix); ok {
			c.got.peerMessage(n)
			storeMax(&c.maxPeer, int64(n))
			return
		}
	}
	c.got.foreign++
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

// idOf returns the id of message n of this client.
func (c *client) idOf(n int) string { return c.prefix + strconv.Itoa(n) }
