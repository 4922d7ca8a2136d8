package hub

import (
	"context"
)

// client is one connection as a session sees it. While it replays, its frames are
// held (in order) instead of sent; afterwards they go straight to its Sender.
// Fields are guarded by the session's lock.
type client struct {
	email     string
	to        Sender
	replaying bool
	held      []heldFrame
	heldMsgs  int   // message frames in held
	window    int   // see Join.Window
	dropped   bool  // held message frames were dropped; the store has them
	overflow  bool  // too many non-message frames held while replaying
	lastSeq   int64 // highest message seq this connection has been given
	gone      bool  // its Sender refused a frame; it is being closed
}

// heldFrame is a frame kept during replay; seq is 0 for frames that are not messages.
type heldFrame struct {
	seq   int64
	frame []byte
}

// message gives the client the message frame of seq and reports whether it was
// queued to the connection now (not held, dropped or refused).
func (c *client) message(seq int64, frame []byte, maxHeld int) bool {
	if c.replaying {
		c.hold(heldFrame{seq, frame}, maxHeld)
		return false
	}
	if seq <= c.lastSeq {
		return false
	}
	c.lastSeq = seq
	return c.send(frame)
}

// other gives the client a frame that is not a message (presence, ended, transcript).
func (c *client) other(frame []byte, maxHeld int) {
	if c.replaying {
		c.hold(heldFrame{0, frame}, maxHeld)
		return
	}
	c.send(frame)
}

// hold keeps a frame while the client replays. Message frames beyond maxHeld are
// dropped, since the replay reads them from the store anyway; other frames beyond it
// mean the client is hopelessly behind.
func (c *client) hold(f heldFrame, maxHeld int) {
	if c.overflow {
		return
	}
	if f.seq > 0 && c.heldMsgs >= maxHeld {
		c.dropMessages()
		return
	}
	if len(c.held) >= 2*maxHeld {
		c.overflow, c.held = true, nil
		return
	}
	if f.seq > 0 {
		c.heldMsgs++
	}
	c.held = append(c.held, f)
}

// dropMessages forgets the held message frames; the replay reads them from the store.
func (c *client) dropMessages() {
	kept := c.held[:0]
	for _, f := range c.held {
		if f.seq == 0 {
			kept = append(kept, f)
		}
	}
	c.held, c.heldMsgs, c.dropped = kept, 0, true
}

// send queues frame and reports whether the connection took it.
func (c *client) send(frame []byte) bool {
	if c.gone {
		return false
	}
	if !c.to.Send(frame) {
		c.gone = true
		return false
	}
	return true
}

// replay writes the stored messages after c.lastSeq through write, page by page, then
// switches c to live delivery. The held live frames start at most one past what the
// store had when the client was added, so once the store has nothing newer the two
// streams meet; frames already replayed are dropped. If they do not meet (a gap), it
// reads the store again rather than skip anything.
func (s *session) replay(ctx context.Context, c *client, write func([]byte) error) error {
	last := c.lastSeq
	for {
		msgs, err := s.h.opts.Messages.Messages(ctx, s.id, last, s.h.opts.PageSize)
		if err != nil {
			return err
		}
		for i, m := range msgs {
			if err := write(s.h.opts.Encode(m)); err != nil {
				s.h.opts.Metrics.Delivered(i)
				return err
			}
			last = m.Seq
		}
		s.h.opts.Metrics.Delivered(len(msgs))
		if len(msgs) == s.h.opts.PageSize {
			continue
		}
		done, err := s.goLive(c, last)
		if done || err != nil {
			return err
		}
	}
}

// goLive switches c to live delivery if the held frames continue right after last.
func (s *session) goLive(c *client, last int64) (bool, error) {
	s.lock()
	defer s.unlock()
	if c.overflow {
		return false, ErrSlow
	}
	newer := 0
	for _, f := range c.held {
		if f.seq > last {
			newer++
		}
	}
	if c.dropped || newer > c.window {
		c.dropMessages()
		c.dropped = false
		return false, nil // replay those from the store, paced by the connection
	}
	for _, f := range c.held {
		if f.seq > last+1 {
			return false, nil // a gap between replay and live: read the store again
		}
		if f.seq > last {
			break
		}
	}
	c.replaying, c.lastSeq = false, last
	held := c.held
	c.held, c.heldMsgs = nil, 0
	n := 0
	for _, f := range held {
		if f.seq == 0 {
			c.send(f.frame)
		} else if f.seq > c.lastSeq {
			c.lastSeq = f.seq
			if c.send(f.frame) {
				n++
			}
		}
	}
	s.h.opts.Metrics.Delivered(n)
	return true, nil
}
