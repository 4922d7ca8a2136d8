package room

import (
	"context"
	"sync"
	"time"

	"parley/internal/chat"
	"parley/internal/wire"
)

// The v1.1 live signals (docs/protocol.md): typing and receipts. Neither is a message:
// they never take a seq, never reach the transcript, and cost no store write per
// frame. Both travel to the chat's connections as events of their own, like presence:
// to this replica's connections at once, and through the broker to the others.
const (
	// TypingEvery is how often one connection's typing reaches the other person at
	// most; the extras are dropped (a client sends one every 2 s while typing).
	TypingEvery = time.Second
	// ReceiptEvery is how often one connection's cursors are written at most: the
	// receipts in between are coalesced, the latest wins, and what is left is written
	// when the connection leaves.
	ReceiptEvery = time.Second
)

// handleTyping tells the other person's connections that this person is typing. Typing
// in an ended chat, or more often than TypingEvery, is dropped without a word: it is
// a hint, and refusing it would only add frames.
func (c *Client) handleTyping(wire.ClientFrame) error {
	now := time.Now()
	if c.member.Ended() || now.Sub(c.typingAt) < TypingEvery {
		return nil
	}
	c.typingAt = now
	if c.typingFrame == nil {
		c.typingFrame = wire.Typing(c.req.Email)
	}
	// This replica's connections hear it at once (a hung broker does not hold it back,
	// and it cannot arrive after the message typed); the broker tells the others, and
	// its copy here is dropped by the stamp.
	ev := chat.Event{Type: chat.EventTyping, Session: c.sess.ID, Email: c.req.Email, Seq: now.UnixNano(), Frame: c.typingFrame}
	c.r.o.Hub.Tell(ev)
	c.r.o.Hub.Publish(ev)
	return nil
}

func (c *Client) handleReceived(f wire.ClientFrame) error {
	return c.advanceCursor(f.Seq, chat.Cursor{Received: f.Seq})
}

func (c *Client) handleRead(f wire.ClientFrame) error {
	return c.advanceCursor(f.Seq, chat.Cursor{Received: f.Seq, Read: f.Seq}) // read implies received
}

var (
	errSeqNegative = chat.Errorf(chat.EInvalidFrame, "A receipt's seq must be a message number (0 or more).")
	errSeqBeyond   = chat.Errorf(chat.EInvalidFrame, "A receipt's seq is beyond the last message of this chat.")
)

// advanceCursor checks a receipt against the chat's last seq and hands it to the
// connection's cursor writer. The last seq is known without the store for every
// message this connection was given; only a seq beyond those is checked against the
// store (a message stored but not yet delivered here, or a lie).
func (c *Client) advanceCursor(seq int64, next chat.Cursor) error {
	if seq < 0 {
		return errSeqNegative
	}
	if c.r.o.Receipts == nil {
		return nil // this deployment keeps no receipts; the welcome said so by leaving them out
	}
	if seq > c.lastSeq {
		c.lastSeq = max(c.lastSeq, c.member.Given())
	}
	if seq > c.lastSeq {
		if _, ok := c.admit("", chat.Mono()); !ok { // a store read: paced like any frame that costs one
			return nil
		}
		last, err := c.r.o.Messages.LastSeq(c.ctx, c.sess.ID)
		if err != nil {
			return err
		}
		c.lastSeq = max(c.lastSeq, last)
		if seq > c.lastSeq {
			return errSeqBeyond
		}
	}
	c.cursor.advance(next)
	return nil
}

// cursorWriter coalesces one connection's receipts: at most one store write every
// ReceiptEvery, and one in flight at a time, always of the latest cursor. Its state
// is a few words, whatever the client sends.
type cursorWriter struct {
	r              *Rooms
	session, email string

	io     sync.Mutex // held by a write: one at a time, and close waits for it
	mu     sync.Mutex
	want   chat.Cursor // the furthest the client has asked for
	stored chat.Cursor // as the store last returned it (or the welcome read it)
	armed  bool        // a write is scheduled or running
	last   time.Time   // when the last write started
	timer  *time.Timer
	closed bool
}

// advance records next and schedules a write if it moves the cursor.
func (w *cursorWriter) advance(next chat.Cursor) {
	w.mu.Lock()
	defer w.mu.Unlock()
	want, moved := w.want.Advance(next)
	w.want = want
	if !moved || w.armed || w.closed {
		return // a lower value is ignored; a scheduled write will take this one
	}
	if want, _ := w.stored.Advance(want); want == w.stored {
		return
	}
	w.schedule(max(0, ReceiptEvery-time.Since(w.last)))
}

// schedule arms the write after d. w.mu must be held.
func (w *cursorWriter) schedule(d time.Duration) {
	w.armed = true
	if w.timer == nil {
		w.timer = time.AfterFunc(d, w.flush)
		return
	}
	w.timer.Reset(d)
}

// flush writes the wanted cursor if it is ahead of the stored one, and tells the chat
// when the stored cursor moved. It runs on the timer's goroutine, or on Leave's.
func (w *cursorWriter) flush() {
	w.io.Lock()
	defer w.io.Unlock()
	w.mu.Lock()
	want, stored := w.want, w.stored
	w.last = time.Now()
	w.mu.Unlock()
	if next, moved := stored.Advance(want); moved {
		ctx, cancel := context.WithTimeout(context.Background(), w.r.o.StoreTimeout)
		got, err := w.r.o.Receipts.AdvanceCursor(ctx, w.session, w.email, next)
		cancel()
		if err != nil {
			w.r.log.Warn("cannot store receipts", "session", w.session, "code", chat.ErrorCode(err), "err", err)
		} else {
			w.mu.Lock()
			stored, moved = w.stored.Advance(got)
			w.stored = stored
			w.mu.Unlock()
			if moved {
				// This replica's connections first, then the others through the broker
				// (its copy here is dropped by the stamp).
				ev := chat.Event{Type: chat.EventReceipt, Session: w.session, Email: w.email,
					Seq: time.Now().UnixNano(), Frame: wire.Receipt(w.email, stored)}
				w.r.o.Hub.Tell(ev)
				w.r.o.Hub.Publish(ev)
			}
		}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.armed = false
	if _, more := w.stored.Advance(w.want); more && !w.closed {
		w.schedule(ReceiptEvery) // more came while writing
	}
}

// close stops the writer and writes what is still wanted, now, after a write in
// flight (if any) has finished. Called by Leave.
func (w *cursorWriter) close() {
	w.mu.Lock()
	w.closed = true
	if w.timer != nil {
		w.timer.Stop()
	}
	w.mu.Unlock()
	w.flush() // writes nothing when the stored cursor is already the wanted one
}
