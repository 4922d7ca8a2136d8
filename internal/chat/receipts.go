package chat

import "context"

// Cursor is how far one person has got in one chat: every message up to Received has
// reached their browser, every message up to Read has been on their screen. Read never
// exceeds Received (reading implies receiving); both only move forward.
type Cursor struct {
	Received int64
	Read     int64
}

// Advance returns c moved forward to at least next (a lower value is ignored), with
// Received raised to Read, and whether anything changed.
func (c Cursor) Advance(next Cursor) (Cursor, bool) {
	out := Cursor{Received: max(c.Received, next.Received, next.Read), Read: max(c.Read, next.Read)}
	return out, out != c
}

// Receipts keeps each person's cursors per chat session: the delivered and read
// receipts of the protocol. Typing signals are never stored; cursors are small rows,
// written only when they move forward, and callers coalesce them (one write per
// person per chat every so often, not one per message).
type Receipts interface {
	// AdvanceCursor moves email's cursor in the session forward to at least c (a
	// field lower than the stored one is ignored; Read raises Received) and returns
	// the stored cursor afterwards. The caller has checked that c does not go beyond
	// the chat's last seq. Concurrent calls never move a cursor back.
	AdvanceCursor(ctx context.Context, sessionID, email string, c Cursor) (Cursor, error)

	// Cursors returns the stored cursor of every person in the session who has one;
	// people without a row have the zero Cursor.
	Cursors(ctx context.Context, sessionID string) (map[string]Cursor, error)
}
