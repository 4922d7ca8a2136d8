package chattest

import (
	"context"
	"sync"
	"testing"

	"parley/internal/chat"
)

// RunReceipts runs the Receipts conformance suite. open returns a store for one
// subtest; newSession makes a session the store knows of (the cursors name it).
func RunReceipts(t *testing.T, open func(t *testing.T) chat.Receipts) {
	tests := []struct {
		name string
		fn   func(t *testing.T, r chat.Receipts)
	}{
		{"NoneIsZero", testCursorsNone},
		{"OnlyForward", testCursorsOnlyForward},
		{"ReadImpliesReceived", testReadImpliesReceived},
		{"PerPersonPerSession", testCursorsPerPerson},
		{"ConcurrentNeverBack", testCursorsConcurrent},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, open(t)) })
	}
}

// advance calls AdvanceCursor and checks what it returns.
func advance(t *testing.T, r chat.Receipts, session, who string, c, want chat.Cursor) {
	t.Helper()
	got, err := r.AdvanceCursor(context.Background(), session, who, c)
	if err != nil {
		t.Fatalf("AdvanceCursor(%+v): %v", c, err)
	}
	if got != want {
		t.Fatalf("AdvanceCursor(%+v) = %+v, want %+v", c, got, want)
	}
}

// cursors reads a session's cursors.
func cursors(t *testing.T, r chat.Receipts, session string) map[string]chat.Cursor {
	t.Helper()
	got, err := r.Cursors(context.Background(), session)
	if err != nil {
		t.Fatalf("Cursors: %v", err)
	}
	return got
}

func testCursorsNone(t *testing.T, r chat.Receipts) {
	if got := cursors(t, r, chat.NewSessionID()); len(got) != 0 {
		t.Fatalf("a session nobody read has cursors %v", got)
	}
}

func testCursorsOnlyForward(t *testing.T, r chat.Receipts) {
	s, a := chat.NewSessionID(), email("a")
	advance(t, r, s, a, chat.Cursor{Received: 5, Read: 3}, chat.Cursor{Received: 5, Read: 3})
	advance(t, r, s, a, chat.Cursor{Received: 4, Read: 2}, chat.Cursor{Received: 5, Read: 3})
	advance(t, r, s, a, chat.Cursor{Received: 7}, chat.Cursor{Received: 7, Read: 3})
	if got := cursors(t, r, s)[a]; got != (chat.Cursor{Received: 7, Read: 3}) {
		t.Fatalf("stored cursor %+v, want {7 3}", got)
	}
}

func testReadImpliesReceived(t *testing.T, r chat.Receipts) {
	s, a := chat.NewSessionID(), email("a")
	advance(t, r, s, a, chat.Cursor{Read: 9}, chat.Cursor{Received: 9, Read: 9})
}

func testCursorsPerPerson(t *testing.T, r chat.Receipts) {
	s1, s2, a, b := chat.NewSessionID(), chat.NewSessionID(), email("a"), email("b")
	advance(t, r, s1, a, chat.Cursor{Received: 2, Read: 1}, chat.Cursor{Received: 2, Read: 1})
	advance(t, r, s1, b, chat.Cursor{Received: 4, Read: 4}, chat.Cursor{Received: 4, Read: 4})
	advance(t, r, s2, a, chat.Cursor{Received: 1}, chat.Cursor{Received: 1})
	got := cursors(t, r, s1)
	if len(got) != 2 || got[a] != (chat.Cursor{Received: 2, Read: 1}) || got[b] != (chat.Cursor{Received: 4, Read: 4}) {
		t.Fatalf("session 1 cursors %v", got)
	}
	if got := cursors(t, r, s2); len(got) != 1 || got[a] != (chat.Cursor{Received: 1}) {
		t.Fatalf("session 2 cursors %v", got)
	}
}

// testCursorsConcurrent advances one cursor from many goroutines in scrambled order:
// the stored value ends at the highest, as from several replicas at once.
func testCursorsConcurrent(t *testing.T, r chat.Receipts) {
	s, a := chat.NewSessionID(), email("a")
	const n = 40
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			seq := int64((i*17)%n + 1)
			if _, err := r.AdvanceCursor(context.Background(), s, a, chat.Cursor{Received: seq, Read: seq / 2}); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("AdvanceCursor: %v", err)
	}
	if got := cursors(t, r, s)[a]; got != (chat.Cursor{Received: n, Read: n / 2}) {
		t.Fatalf("after concurrent advances the cursor is %+v, want {%d %d}", got, n, n/2)
	}
}
