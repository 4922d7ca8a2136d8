package chattest

import (
	"context"
	"reflect"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"parley/internal/chat"
)

// RunSessionStore runs the SessionStore conformance suite. open returns a store for
// one subtest (fresh or shared); the suite does not close it, open registers that
// with t.Cleanup.
func RunSessionStore(t *testing.T, open func(t *testing.T) chat.SessionStore) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s chat.SessionStore)
	}{
		{"HostThenParticipantThenRoomFull", testHostParticipantFull},
		{"ReenterKeepsRole", testReenterKeepsRole},
		{"ConcurrentEnterTwoEmails", testConcurrentEnterTwoEmails},
		{"ConcurrentEnterManyEmails", testConcurrentEnterManyEmails},
		{"ConcurrentEnd", testConcurrentEnd},
		{"EndTwiceAndUnknown", testEndTwiceAndUnknown},
		{"NewSessionAfterEnd", testNewSessionAfterEnd},
		{"SessionNotFound", testSessionNotFound},
		{"InProgressStartsNothing", testInProgress},
		{"LatestSessionOfPersonInRoom", testLatestSession},
		{"SessionsByEmailNewestFirst", testSessionsByEmail},
		{"SessionsEndingOldestFirst", testSessionsEnding},
		{"Lifecycle", testLifecycle},
		{"NoArchiveNeverPurged", testNoArchiveNeverPurged},
		{"CompleteOnlyFromEnding", testCompleteOnlyFromEnding},
		{"TimeRoundTrip", testSessionTimeRoundTrip},
		{"Ping", func(t *testing.T, s chat.SessionStore) { must(t, s.Ping(context.Background())) }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, open(t)) })
	}
}

// enter calls Enter and checks the role.
func enter(t *testing.T, s chat.SessionStore, room, email string, now int, want chat.Role) *chat.Session {
	t.Helper()
	sess, role, err := s.Enter(context.Background(), room, email, at(now))
	if err != nil {
		t.Fatalf("Enter(%s, %s): %v", room, email, err)
	}
	if role != want {
		t.Fatalf("Enter(%s, %s) role = %q, want %q", room, email, role, want)
	}
	return sess
}

// read returns the stored session.
func read(t *testing.T, s chat.SessionStore, id string) *chat.Session {
	t.Helper()
	got, err := s.Session(context.Background(), id)
	if err != nil {
		t.Fatalf("Session(%s): %v", id, err)
	}
	return got
}

func testHostParticipantFull(t *testing.T, s chat.SessionStore) {
	room, a, b, c := unique("room-"), email("a"), email("b"), email("c")
	host := enter(t, s, room, a, 0, chat.RoleHost)
	if host.Room != room || host.HostEmail != a || host.ParticipantEmail != "" || host.Status != chat.StatusInProgress || host.ID == "" {
		t.Fatalf("new session = %+v", host)
	}
	part := enter(t, s, room, b, 1, chat.RoleParticipant)
	if part.ID != host.ID || part.HostEmail != a || part.ParticipantEmail != b {
		t.Fatalf("participant's session = %+v, want id %s host %s participant %s", part, host.ID, a, b)
	}
	_, role, err := s.Enter(context.Background(), room, c, at(2))
	wantCode(t, err, chat.ERoomFull)
	if role != chat.RoleNone {
		t.Fatalf("refused role = %q", role)
	}
	got := read(t, s, host.ID)
	if got.HostEmail != a || got.ParticipantEmail != b || got.Status != chat.StatusInProgress || !got.InitiatedAt.Equal(at(0)) {
		t.Fatalf("stored session = %+v", got)
	}
}

func testReenterKeepsRole(t *testing.T, s chat.SessionStore) {
	room, a, b := unique("room-"), email("a"), email("b")
	first := enter(t, s, room, a, 0, chat.RoleHost)
	if again := enter(t, s, room, a, 1, chat.RoleHost); again.ID != first.ID {
		t.Fatalf("host re-entering alone got session %s, want %s", again.ID, first.ID)
	}
	enter(t, s, room, b, 2, chat.RoleParticipant)
	for i, tc := range []struct {
		email string
		role  chat.Role
	}{{a, chat.RoleHost}, {b, chat.RoleParticipant}, {b, chat.RoleParticipant}, {a, chat.RoleHost}} {
		if got := enter(t, s, room, tc.email, 3+i, tc.role); got.ID != first.ID {
			t.Fatalf("re-enter %d got session %s, want %s", i, got.ID, first.ID)
		}
	}
}

func testConcurrentEnterTwoEmails(t *testing.T, s chat.SessionStore) {
	room, a, b := unique("room-"), email("a"), email("b")
	const n = 20
	ids, roles, errs := make([]string, n), make([]chat.Role, n), make([]error, n)
	emails := [2]string{a, b}
	parallel(n, func(i int) {
		sess, role, err := s.Enter(context.Background(), room, emails[i%2], at(i))
		errs[i], roles[i] = err, role
		if sess != nil {
			ids[i] = sess.ID
		}
	})
	roleOf := map[string]chat.Role{}
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("Enter %d: %v", i, errs[i])
		}
		if ids[i] != ids[0] {
			t.Fatalf("two sessions in one room: %s and %s", ids[0], ids[i])
		}
		e := emails[i%2]
		if r, ok := roleOf[e]; ok && r != roles[i] {
			t.Fatalf("%s got roles %q and %q", e, r, roles[i])
		}
		roleOf[e] = roles[i]
	}
	if roleOf[a] == roleOf[b] || roleOf[a] == chat.RoleNone || roleOf[b] == chat.RoleNone {
		t.Fatalf("roles = %v, want one host and one participant", roleOf)
	}
	got := read(t, s, ids[0])
	if got.RoleOf(a) != roleOf[a] || got.RoleOf(b) != roleOf[b] {
		t.Fatalf("stored host %q participant %q disagree with roles %v", got.HostEmail, got.ParticipantEmail, roleOf)
	}
}

func testConcurrentEnterManyEmails(t *testing.T, s chat.SessionStore) {
	for range 5 { // a lost race is timing-dependent: give it several rooms to show
		enterManyEmails(t, s)
	}
}

// enterManyEmails has 20 distinct people enter one new room at once.
func enterManyEmails(t *testing.T, s chat.SessionStore) {
	t.Helper()
	room := unique("room-")
	const n = 20
	var hosts, participants, full atomic.Int32
	var mu sync.Mutex
	ids := map[string]bool{}
	parallel(n, func(i int) {
		sess, role, err := s.Enter(context.Background(), room, email("p"), at(i))
		switch {
		case chat.IsCode(err, chat.ERoomFull):
			full.Add(1)
			return
		case err != nil:
			t.Errorf("Enter: %v", err)
			return
		case role == chat.RoleHost:
			hosts.Add(1)
		case role == chat.RoleParticipant:
			participants.Add(1)
		}
		mu.Lock()
		ids[sess.ID] = true
		mu.Unlock()
	})
	if hosts.Load() != 1 || participants.Load() != 1 || full.Load() != n-2 || len(ids) != 1 {
		t.Fatalf("hosts %d participants %d full %d sessions %d; want 1, 1, %d, 1",
			hosts.Load(), participants.Load(), full.Load(), len(ids), n-2)
	}
}

func testConcurrentEnd(t *testing.T, s chat.SessionStore) {
	room, a, b := unique("room-"), email("a"), email("b")
	sess := enter(t, s, room, a, 0, chat.RoleHost)
	enter(t, s, room, b, 1, chat.RoleParticipant)
	const n = 20
	var won atomic.Int32
	parallel(n, func(i int) {
		by := a
		if i%2 == 1 {
			by = b
		}
		ok, err := s.End(context.Background(), sess.ID, by, at(10))
		if err != nil {
			t.Errorf("End: %v", err)
		}
		if ok {
			won.Add(1)
		}
	})
	if won.Load() != 1 {
		t.Fatalf("%d End calls returned true, want 1", won.Load())
	}
	got := read(t, s, sess.ID)
	if got.Status != chat.StatusEnding || !got.EndedAt.Equal(at(10)) || (got.EndedBy != a && got.EndedBy != b) {
		t.Fatalf("ended session = %+v", got)
	}
}

func testEndTwiceAndUnknown(t *testing.T, s chat.SessionStore) {
	ctx := context.Background()
	a := email("a")
	sess := enter(t, s, unique("room-"), a, 0, chat.RoleHost)
	if ok, err := s.End(ctx, sess.ID, a, at(1)); !ok || err != nil {
		t.Fatalf("first End = %v, %v", ok, err)
	}
	if ok, err := s.End(ctx, sess.ID, a, at(2)); ok || err != nil {
		t.Fatalf("second End = %v, %v; want false, nil", ok, err)
	}
	if got := read(t, s, sess.ID); !got.EndedAt.Equal(at(1)) {
		t.Fatalf("second End changed ended time to %v", got.EndedAt)
	}
	_, err := s.End(ctx, chat.NewSessionID(), a, at(3))
	wantCode(t, err, chat.ENotFound)
}

func testNewSessionAfterEnd(t *testing.T, s chat.SessionStore) {
	room, a, b, c := unique("room-"), email("a"), email("b"), email("c")
	old := enter(t, s, room, a, 0, chat.RoleHost)
	enter(t, s, room, b, 1, chat.RoleParticipant)
	if ok, err := s.End(context.Background(), old.ID, b, at(2)); !ok || err != nil {
		t.Fatalf("End = %v, %v", ok, err)
	}
	next := enter(t, s, room, c, 3, chat.RoleHost)
	if next.ID == old.ID {
		t.Fatal("a new Enter after End returned the ended session")
	}
	enter(t, s, room, a, 4, chat.RoleParticipant)
	if got := read(t, s, old.ID); got.Status != chat.StatusEnding || got.ParticipantEmail != b {
		t.Fatalf("old session changed: %+v", got)
	}
}

func testSessionNotFound(t *testing.T, s chat.SessionStore) {
	ctx := context.Background()
	_, err := s.Session(ctx, chat.NewSessionID())
	wantCode(t, err, chat.ENotFound)
	wantCode(t, s.Complete(ctx, chat.NewSessionID(), "/x", at(0)), chat.ENotFound)
}

func testInProgress(t *testing.T, s chat.SessionStore) {
	ctx := context.Background()
	room, a := unique("room-"), email("a")
	_, err := s.InProgress(ctx, room)
	wantCode(t, err, chat.ENotFound)
	if _, err := s.InProgress(ctx, room); !chat.IsCode(err, chat.ENotFound) {
		t.Fatalf("asking twice started a chat: %v", err)
	}
	sess := enter(t, s, room, a, 0, chat.RoleHost)
	got, err := s.InProgress(ctx, room)
	if err != nil || got.ID != sess.ID {
		t.Fatalf("InProgress = %+v, %v; want session %s", got, err, sess.ID)
	}
	if ok, err := s.End(ctx, sess.ID, a, at(1)); !ok || err != nil {
		t.Fatalf("End = %v, %v", ok, err)
	}
	_, err = s.InProgress(ctx, room)
	wantCode(t, err, chat.ENotFound)
}

func testLatestSession(t *testing.T, s chat.SessionStore) {
	ctx := context.Background()
	room, a, b, c := unique("room-"), email("a"), email("b"), email("c")
	_, err := s.LatestSession(ctx, room, a)
	wantCode(t, err, chat.ENotFound)
	first := enter(t, s, room, a, 0, chat.RoleHost)
	enter(t, s, room, b, 1, chat.RoleParticipant)
	if ok, err := s.End(ctx, first.ID, b, at(2)); !ok || err != nil {
		t.Fatalf("End = %v, %v", ok, err)
	}
	second := enter(t, s, room, c, 3, chat.RoleHost)  // a newer chat a is not in
	enter(t, s, unique("room-"), a, 4, chat.RoleHost) // a chat of a's in another room
	got, err := s.LatestSession(ctx, room, a)
	if err != nil || got.ID != first.ID || got.Status != chat.StatusEnding {
		t.Fatalf("LatestSession(a) = %+v, %v; want the ended session %s", got, err, first.ID)
	}
	enter(t, s, room, a, 5, chat.RoleParticipant)
	if got, err := s.LatestSession(ctx, room, a); err != nil || got.ID != second.ID {
		t.Fatalf("LatestSession(a) after joining the new chat = %+v, %v; want %s", got, err, second.ID)
	}
}

// ids returns the ids of list that are in mine, in list order.
func ids(list []*chat.Session, mine map[string]bool) []string {
	var out []string
	for _, s := range list {
		if mine[s.ID] {
			out = append(out, s.ID)
		}
	}
	return out
}

func testSessionsByEmail(t *testing.T, s chat.SessionStore) {
	ctx := context.Background()
	x, other := email("x"), email("o")
	// x hosts at times 3, 1, 2 and is participant at time 4 (entered in this order to
	// show the order comes from the times, not insertion).
	s3 := enter(t, s, unique("room-"), x, 3, chat.RoleHost)
	s1 := enter(t, s, unique("room-"), x, 1, chat.RoleHost)
	s2 := enter(t, s, unique("room-"), x, 2, chat.RoleHost)
	room4 := unique("room-")
	s4 := enter(t, s, room4, other, 4, chat.RoleHost)
	enter(t, s, room4, x, 5, chat.RoleParticipant)
	enter(t, s, unique("room-"), other, 6, chat.RoleHost) // not x's

	got, err := s.SessionsByEmail(ctx, x, 10)
	must(t, err)
	want := []string{s4.ID, s3.ID, s2.ID, s1.ID}
	if gotIDs := sessionIDs(got); !reflect.DeepEqual(gotIDs, want) {
		t.Fatalf("SessionsByEmail = %v, want %v", gotIDs, want)
	}
	if got[0].ParticipantEmail != x || got[0].HostEmail != other {
		t.Fatalf("listed session lacks its fields: %+v", got[0])
	}
	got, err = s.SessionsByEmail(ctx, x, 2)
	must(t, err)
	if gotIDs := sessionIDs(got); !reflect.DeepEqual(gotIDs, want[:2]) {
		t.Fatalf("SessionsByEmail limit 2 = %v, want %v", gotIDs, want[:2])
	}
	got, err = s.SessionsByEmail(ctx, email("nobody"), 10)
	must(t, err)
	if len(got) != 0 {
		t.Fatalf("unknown email lists %d sessions", len(got))
	}
}

func sessionIDs(list []*chat.Session) []string {
	out := make([]string, len(list))
	for i, s := range list {
		out[i] = s.ID
	}
	return out
}

func testSessionsEnding(t *testing.T, s chat.SessionStore) {
	ctx := context.Background()
	mine := map[string]bool{}
	var byEnd [3]string
	for i, endAt := range []int{12, 10, 11} {
		a := email("a")
		sess := enter(t, s, unique("room-"), a, i, chat.RoleHost)
		if ok, err := s.End(ctx, sess.ID, a, at(endAt)); !ok || err != nil {
			t.Fatalf("End = %v, %v", ok, err)
		}
		mine[sess.ID], byEnd[endAt-10] = true, sess.ID
	}
	open := enter(t, s, unique("room-"), email("a"), 5, chat.RoleHost)
	mine[open.ID] = true
	done := enter(t, s, unique("room-"), email("a"), 6, chat.RoleHost)
	mine[done.ID] = true
	_, err := s.End(ctx, done.ID, done.HostEmail, at(9))
	must(t, err)
	must(t, s.Complete(ctx, done.ID, "/transcripts/"+done.ID, at(13)))

	list, err := s.SessionsEnding(ctx, 100000)
	must(t, err)
	if got := ids(list, mine); !reflect.DeepEqual(got, byEnd[:]) {
		t.Fatalf("SessionsEnding (mine) = %v, want %v oldest end first, without in-progress or completed", got, byEnd)
	}
}

func testLifecycle(t *testing.T, s chat.SessionStore) {
	ctx := context.Background()
	room, a, b := unique("room-"), email("a"), email("b")
	sess := enter(t, s, room, a, 0, chat.RoleHost)
	enter(t, s, room, b, 1, chat.RoleParticipant)
	ended, err := s.End(ctx, sess.ID, b, at(2))
	if !ended || err != nil {
		t.Fatalf("End = %v, %v", ended, err)
	}
	obj := chat.ArchiveObject{Key: chat.ArchiveKey(sess.ID), Size: 1234, SHA256: unique("ab")}
	must(t, s.RecordArchive(ctx, sess.ID, obj, 42))
	must(t, s.RecordArchive(ctx, sess.ID, obj, 42)) // a repeat is harmless
	must(t, s.RecordMail(ctx, sess.ID, chat.RoleHost, at(3), ""))
	must(t, s.RecordMail(ctx, sess.ID, chat.RoleParticipant, time.Time{}, "550 no such mailbox"))
	mine := map[string]bool{sess.ID: true}
	if got := purgeable(t, s, mine); len(got) != 0 {
		t.Fatal("an ending session is listed to purge")
	}

	link := "/transcripts/" + sess.ID
	must(t, s.Complete(ctx, sess.ID, link, at(4)))
	must(t, s.Complete(ctx, sess.ID, link, at(4))) // completing again is harmless
	want := chat.Session{
		ID: sess.ID, Room: room, HostEmail: a, ParticipantEmail: b, Status: chat.StatusCompleted,
		InitiatedAt: at(0), EndedAt: at(2), EndedBy: b, CompletedAt: at(4), ChatHistory: link,
		Archive: obj, MessageCount: 42, HostMailedAt: at(3), ParticipantMailError: "550 no such mailbox",
	}
	checkSession(t, read(t, s, sess.ID), want)
	if ok, err := s.End(ctx, sess.ID, a, at(5)); ok || err != nil {
		t.Fatalf("End of a completed session = %v, %v; want false, nil", ok, err)
	}

	if got := purgeable(t, s, mine); len(got) != 1 {
		t.Fatalf("completed archived session not listed to purge (got %v)", got)
	}
	must(t, s.MarkPurged(ctx, sess.ID, at(6)))
	must(t, s.MarkPurged(ctx, sess.ID, at(7))) // a repeat is harmless
	if got := purgeable(t, s, mine); len(got) != 0 {
		t.Fatal("a purged session is listed to purge again")
	}
	want.PurgedAt = at(6)
	checkSession(t, read(t, s, sess.ID), want)
}

// purgeable returns the ids of mine that SessionsToPurge lists.
func purgeable(t *testing.T, s chat.SessionStore, mine map[string]bool) []string {
	t.Helper()
	list, err := s.SessionsToPurge(context.Background(), 100000)
	must(t, err)
	return ids(list, mine)
}

// checkSession compares sessions field by field, times with Equal.
func checkSession(t *testing.T, got *chat.Session, want chat.Session) {
	t.Helper()
	times := []struct {
		name      string
		got, want time.Time
	}{
		{"InitiatedAt", got.InitiatedAt, want.InitiatedAt}, {"EndedAt", got.EndedAt, want.EndedAt},
		{"CompletedAt", got.CompletedAt, want.CompletedAt}, {"HostMailedAt", got.HostMailedAt, want.HostMailedAt},
		{"ParticipantMailedAt", got.ParticipantMailedAt, want.ParticipantMailedAt}, {"PurgedAt", got.PurgedAt, want.PurgedAt},
	}
	for _, tc := range times {
		if !tc.got.Equal(tc.want) || tc.got.IsZero() != tc.want.IsZero() {
			t.Errorf("%s = %v, want %v", tc.name, tc.got, tc.want)
		}
	}
	g, w := *got, want
	g.InitiatedAt, g.EndedAt, g.CompletedAt, g.HostMailedAt, g.ParticipantMailedAt, g.PurgedAt = w.InitiatedAt, w.EndedAt, w.CompletedAt, w.HostMailedAt, w.ParticipantMailedAt, w.PurgedAt
	if !reflect.DeepEqual(g, w) {
		t.Errorf("session =\n%+v\nwant\n%+v", g, w)
	}
}

func testNoArchiveNeverPurged(t *testing.T, s chat.SessionStore) {
	ctx := context.Background()
	noArchive := enter(t, s, unique("room-"), email("a"), 0, chat.RoleHost)
	_, err := s.End(ctx, noArchive.ID, noArchive.HostEmail, at(1))
	must(t, err)
	must(t, s.Complete(ctx, noArchive.ID, "/transcripts/"+noArchive.ID, at(2)))

	ending := enter(t, s, unique("room-"), email("a"), 0, chat.RoleHost)
	_, err = s.End(ctx, ending.ID, ending.HostEmail, at(1))
	must(t, err)
	must(t, s.RecordArchive(ctx, ending.ID, chat.ArchiveObject{Key: chat.ArchiveKey(ending.ID), Size: 1, SHA256: "00"}, 1))

	if got := purgeable(t, s, map[string]bool{noArchive.ID: true, ending.ID: true}); len(got) != 0 {
		t.Fatalf("SessionsToPurge lists %v: without archive or not completed", got)
	}
}

func testCompleteOnlyFromEnding(t *testing.T, s chat.SessionStore) {
	ctx := context.Background()
	sess := enter(t, s, unique("room-"), email("a"), 0, chat.RoleHost)
	if err := s.Complete(ctx, sess.ID, "/transcripts/"+sess.ID, at(1)); err == nil {
		t.Fatal("Complete of an in-progress session succeeded")
	}
	if got := read(t, s, sess.ID); got.Status != chat.StatusInProgress || !got.CompletedAt.IsZero() {
		t.Fatalf("Complete changed an in-progress session: %+v", got)
	}
	if ok, err := s.End(ctx, sess.ID, sess.HostEmail, at(2)); !ok || err != nil {
		t.Fatalf("End after refused Complete = %v, %v", ok, err)
	}
}

func testSessionTimeRoundTrip(t *testing.T, s chat.SessionStore) {
	ctx := context.Background()
	zone := time.FixedZone("UTC+5:30", 5*3600+1800)
	for i, now := range []time.Time{
		time.Date(2026, 1, 2, 3, 4, 5, 999999000, zone),
		time.Date(1999, 12, 31, 23, 59, 59, 1000, time.UTC),
		time.Date(2038, 1, 19, 3, 14, 8, 123456000, time.UTC),
	} {
		room, a := unique("room-"), email("a")
		sess, _, err := s.Enter(ctx, room, a, now)
		must(t, err)
		if !sess.InitiatedAt.Equal(now) {
			t.Errorf("%d: Enter returned InitiatedAt %v, want %v", i, sess.InitiatedAt, now)
		}
		end := now.Add(90*time.Minute + 7*time.Microsecond)
		_, err = s.End(ctx, sess.ID, a, end)
		must(t, err)
		got := read(t, s, sess.ID)
		if !got.InitiatedAt.Equal(now) || !got.EndedAt.Equal(end) {
			t.Errorf("%d: read back initiated %v ended %v, want %v and %v", i, got.InitiatedAt, got.EndedAt, now, end)
		}
	}
}
