package chattest

import (
	"context"
	"fmt"
	"reflect"
	"sync"
	"testing"
	"time"

	"parley/internal/chat"
)

// RunMessageStore runs the MessageStore conformance suite. open returns a store for
// one subtest (fresh or shared); the suite does not close it, open registers that
// with t.Cleanup.
func RunMessageStore(t *testing.T, open func(t *testing.T) chat.MessageStore) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s chat.MessageStore)
	}{
		{"AppendSeqContiguous", testAppendContiguous},
		{"DuplicateClientID", testDuplicateClientID},
		{"DuplicateClientIDConcurrent", testDuplicateConcurrent},
		{"SameClientIDOtherSession", testSameClientIDOtherSession},
		{"ConcurrentAppendOneSession", testConcurrentOneSession},
		{"ConcurrentAppendManySessions", testConcurrentManySessions},
		{"MessagesPaging", testPaging},
		{"LastSeq", testLastSeq},
		{"DeleteSession", testDeleteSession},
		{"SessionsDoNotLeak", testNoLeak},
		{"CreatedAtRoundTrip", testCreatedAtRoundTrip},
		{"Ping", func(t *testing.T, s chat.MessageStore) { must(t, s.Ping(context.Background())) }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, open(t)) })
	}
}

// newMessage returns a message of session with the given client id, every field set
// except Seq.
func newMessage(session, clientID string, n int) chat.Message {
	return chat.Message{
		SessionID: session, ClientID: clientID, From: "host@example.com", To: "guest@example.com",
		Room: "room-" + session[:8], Kind: chat.KindChat, Text: fmt.Sprintf("hello %d ✓ <b>&amp;", n),
		CreatedAt: at(n),
	}
}

// appendOK appends and fails t unless the message is stored as new.
func appendOK(t testing.TB, s chat.MessageStore, m chat.Message) chat.Message {
	t.Helper()
	got, dup, err := s.Append(context.Background(), m)
	if err != nil {
		t.Fatalf("Append(%s/%s): %v", m.SessionID, m.ClientID, err)
	}
	if dup {
		t.Fatalf("Append(%s/%s) reported a duplicate", m.SessionID, m.ClientID)
	}
	return got
}

// all reads every message of the session.
func all(t *testing.T, s chat.MessageStore, session string) []chat.Message {
	t.Helper()
	got, err := s.Messages(context.Background(), session, 0, 100000)
	must(t, err)
	return got
}

// checkSeqs fails t unless msgs have seqs 1..n in order, each from session.
func checkSeqs(t *testing.T, msgs []chat.Message, session string, n int) {
	t.Helper()
	if len(msgs) != n {
		t.Fatalf("session has %d messages, want %d", len(msgs), n)
	}
	for i, m := range msgs {
		if m.Seq != int64(i+1) || m.SessionID != session {
			t.Fatalf("message %d has seq %d session %s, want seq %d session %s", i, m.Seq, m.SessionID, i+1, session)
		}
	}
}

// sameMessage compares messages, CreatedAt with Equal.
func sameMessage(t *testing.T, got, want chat.Message) {
	t.Helper()
	if !got.CreatedAt.Equal(want.CreatedAt) {
		t.Errorf("CreatedAt = %v, want %v", got.CreatedAt, want.CreatedAt)
	}
	got.CreatedAt, want.CreatedAt = time.Time{}, time.Time{}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("message =\n%+v\nwant\n%+v", got, want)
	}
}

func testAppendContiguous(t *testing.T, s chat.MessageStore) {
	session := chat.NewSessionID()
	var stored []chat.Message
	for i := range 10 {
		m := newMessage(session, unique("c"), i)
		if i == 3 {
			m.Kind, m.Text, m.To = chat.KindBye, chat.ByeText, ""
		}
		got := appendOK(t, s, m)
		m.Seq = int64(i + 1)
		sameMessage(t, got, m)
		stored = append(stored, got)
	}
	read := all(t, s, session)
	checkSeqs(t, read, session, 10)
	for i := range read {
		sameMessage(t, read[i], stored[i])
	}
}

func testDuplicateClientID(t *testing.T, s chat.MessageStore) {
	ctx := context.Background()
	session := chat.NewSessionID()
	first := appendOK(t, s, newMessage(session, "same-id", 1))
	appendOK(t, s, newMessage(session, "other-id", 2))
	again := newMessage(session, "same-id", 3)
	again.Text = "a resend with other text"
	got, dup, err := s.Append(ctx, again)
	if err != nil || !dup {
		t.Fatalf("resend: dup %v, err %v; want a duplicate", dup, err)
	}
	sameMessage(t, got, first)
	msgs := all(t, s, session)
	checkSeqs(t, msgs, session, 2)
	sameMessage(t, msgs[0], first)
	if last, err := s.LastSeq(ctx, session); last != 2 || err != nil {
		t.Fatalf("LastSeq = %d, %v; want 2", last, err)
	}
	next := appendOK(t, s, newMessage(session, "third-id", 4))
	if next.Seq != 3 {
		t.Fatalf("seq after a duplicate = %d, want 3 (a duplicate must not use a seq)", next.Seq)
	}
}

func testDuplicateConcurrent(t *testing.T, s chat.MessageStore) {
	session := chat.NewSessionID()
	appendOK(t, s, newMessage(session, "before", 0))
	const n = 20
	got, dups := make([]chat.Message, n), make([]bool, n)
	parallel(n, func(i int) {
		var err error
		got[i], dups[i], err = s.Append(context.Background(), newMessage(session, "same", i+1))
		if err != nil {
			t.Errorf("Append: %v", err)
		}
	})
	fresh := 0
	for i := range n {
		if !dups[i] {
			fresh++
		}
		if got[i].Seq != 2 || got[i].Text != got[0].Text {
			t.Fatalf("call %d got seq %d text %q; every call must get the one stored message (seq 2, %q)", i, got[i].Seq, got[i].Text, got[0].Text)
		}
	}
	if fresh != 1 {
		t.Fatalf("%d calls stored the message, want exactly 1", fresh)
	}
	checkSeqs(t, all(t, s, session), session, 2)
}

func testSameClientIDOtherSession(t *testing.T, s chat.MessageStore) {
	a, b := chat.NewSessionID(), chat.NewSessionID()
	appendOK(t, s, newMessage(a, "shared", 1))
	if got := appendOK(t, s, newMessage(b, "shared", 1)); got.Seq != 1 || got.SessionID != b {
		t.Fatalf("same client id in another session stored as %+v", got)
	}
}

// appendConcurrently appends per messages from each of writers goroutines to each
// session and checks every session ends with seqs 1..n, each client id exactly once
// at the seq its Append returned.
func appendConcurrently(t *testing.T, s chat.MessageStore, sessions []string, writers, per int) {
	t.Helper()
	type key struct {
		session string
		seq     int64
	}
	var mu sync.Mutex
	given := map[key]string{} // seq returned to the caller → client id
	parallel(len(sessions)*writers, func(g int) {
		session := sessions[g%len(sessions)]
		for j := range per {
			m := newMessage(session, fmt.Sprintf("g%d-m%d", g, j), j)
			got, dup, err := s.Append(context.Background(), m)
			if err != nil || dup {
				t.Errorf("Append: dup %v err %v", dup, err)
				return
			}
			mu.Lock()
			if prev, ok := given[key{session, got.Seq}]; ok {
				t.Errorf("seq %d given to %s and %s", got.Seq, prev, m.ClientID)
			}
			given[key{session, got.Seq}] = m.ClientID
			mu.Unlock()
		}
	})
	if t.Failed() {
		t.FailNow()
	}
	for _, session := range sessions {
		msgs := all(t, s, session)
		checkSeqs(t, msgs, session, writers*per)
		for _, m := range msgs {
			if given[key{session, m.Seq}] != m.ClientID {
				t.Fatalf("seq %d holds %s but Append returned it for %s", m.Seq, m.ClientID, given[key{session, m.Seq}])
			}
		}
	}
}

func testConcurrentOneSession(t *testing.T, s chat.MessageStore) {
	appendConcurrently(t, s, []string{chat.NewSessionID()}, 50, 10)
}

func testConcurrentManySessions(t *testing.T, s chat.MessageStore) {
	sessions := make([]string, 20)
	for i := range sessions {
		sessions[i] = chat.NewSessionID()
	}
	appendConcurrently(t, s, sessions, 5, 10)
}

func testPaging(t *testing.T, s chat.MessageStore) {
	ctx := context.Background()
	session := chat.NewSessionID()
	for i := range 25 {
		appendOK(t, s, newMessage(session, unique("c"), i))
	}
	tests := []struct {
		name         string
		after        int64
		limit        int
		first, count int
	}{
		{"FirstPage", 0, 10, 1, 10},
		{"SecondPage", 10, 10, 11, 10},
		{"LastPartialPage", 20, 10, 21, 5},
		{"AfterLast", 25, 10, 0, 0},
		{"Middle", 7, 3, 8, 3},
		{"LimitOne", 24, 1, 25, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := s.Messages(ctx, session, tc.after, tc.limit)
			must(t, err)
			if len(got) != tc.count {
				t.Fatalf("got %d messages, want %d", len(got), tc.count)
			}
			for i, m := range got {
				if m.Seq != int64(tc.first+i) {
					t.Fatalf("message %d has seq %d, want %d", i, m.Seq, tc.first+i)
				}
			}
		})
	}
}

func testLastSeq(t *testing.T, s chat.MessageStore) {
	ctx := context.Background()
	session := chat.NewSessionID()
	if last, err := s.LastSeq(ctx, session); last != 0 || err != nil {
		t.Fatalf("LastSeq of an empty session = %d, %v", last, err)
	}
	for i := range 7 {
		appendOK(t, s, newMessage(session, unique("c"), i))
		if last, err := s.LastSeq(ctx, session); last != int64(i+1) || err != nil {
			t.Fatalf("LastSeq = %d, %v; want %d", last, err, i+1)
		}
	}
}

func testDeleteSession(t *testing.T, s chat.MessageStore) {
	ctx := context.Background()
	gone, kept := chat.NewSessionID(), chat.NewSessionID()
	for i := range 12 {
		appendOK(t, s, newMessage(gone, unique("c"), i))
		if i < 3 {
			appendOK(t, s, newMessage(kept, unique("c"), i))
		}
	}
	n, err := s.DeleteSession(ctx, gone)
	if n != 12 || err != nil {
		t.Fatalf("DeleteSession = %d, %v; want 12", n, err)
	}
	if msgs := all(t, s, gone); len(msgs) != 0 {
		t.Fatalf("%d messages left after DeleteSession", len(msgs))
	}
	if last, err := s.LastSeq(ctx, gone); last != 0 || err != nil {
		t.Fatalf("LastSeq after delete = %d, %v", last, err)
	}
	checkSeqs(t, all(t, s, kept), kept, 3)
	for _, id := range []string{gone, chat.NewSessionID()} {
		if n, err := s.DeleteSession(ctx, id); n != 0 || err != nil {
			t.Fatalf("DeleteSession of an empty session = %d, %v", n, err)
		}
	}
}

func testNoLeak(t *testing.T, s chat.MessageStore) {
	a, b := chat.NewSessionID(), chat.NewSessionID()
	for i := range 6 {
		appendOK(t, s, newMessage(a, unique("a"), i))
		appendOK(t, s, newMessage(b, unique("b"), i))
		appendOK(t, s, newMessage(b, unique("b"), i))
	}
	checkSeqs(t, all(t, s, a), a, 6)
	checkSeqs(t, all(t, s, b), b, 12)
	if got, err := s.Messages(context.Background(), chat.NewSessionID(), 0, 100); len(got) != 0 || err != nil {
		t.Fatalf("unknown session has %d messages, %v", len(got), err)
	}
}

func testCreatedAtRoundTrip(t *testing.T, s chat.MessageStore) {
	session := chat.NewSessionID()
	given := newMessage(session, "given", 1)
	given.CreatedAt = time.Date(2026, 6, 1, 12, 0, 0, 123456000, time.FixedZone("X", -7*3600))
	unset := newMessage(session, "unset", 2)
	unset.CreatedAt = time.Time{}
	before := time.Now().Add(-time.Second)
	storedGiven, storedUnset := appendOK(t, s, given), appendOK(t, s, unset)
	if !storedGiven.CreatedAt.Equal(given.CreatedAt) {
		t.Fatalf("CreatedAt given %v came back %v", given.CreatedAt, storedGiven.CreatedAt)
	}
	if storedUnset.CreatedAt.Before(before) || storedUnset.CreatedAt.After(time.Now().Add(time.Second)) {
		t.Fatalf("unset CreatedAt became %v, want about now", storedUnset.CreatedAt)
	}
	msgs := all(t, s, session)
	checkSeqs(t, msgs, session, 2)
	sameMessage(t, msgs[0], storedGiven)
	sameMessage(t, msgs[1], storedUnset)
}
