package transcript_test

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"parley/internal/chat"
	"parley/internal/memqueue"
	"parley/internal/testenv"
	"parley/internal/transcript"
)

// exported returns a completed, archived session with n messages.
func (e *env) exported(t *testing.T, room string, n int) *chat.Session {
	t.Helper()
	s := e.chatSession(t, room, host, participant, n, true)
	if err := e.exporter(t, e.options(nil)).Export(context.Background(), s.ID); err != nil {
		t.Fatal(err)
	}
	return e.session(t, s.ID)
}

func (e *env) messageCount(t *testing.T, id string) int {
	t.Helper()
	msgs, err := e.db.Messages(context.Background(), id, 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	return len(msgs)
}

func TestPurge(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	confirmed := e.exported(t, "kept", 7)
	missing := e.exported(t, "missing", 5)
	altered := e.exported(t, "altered", 5)
	live := e.chatSession(t, "live", host, participant, 3, false)
	ending := e.chatSession(t, "ending", host, participant, 3, true)

	if err := os.Remove(filepath.Join(e.archive.Dir(), "transcripts", missing.ID+".csv")); err != nil {
		t.Fatal(err)
	}
	// Same size, one byte changed: only the SHA-256 can tell.
	p := filepath.Join(e.archive.Dir(), "transcripts", altered.ID+".csv")
	body, _ := os.ReadFile(p)
	body[len(body)-3] ^= 1
	if err := os.WriteFile(p, body, 0o640); err != nil {
		t.Fatal(err)
	}

	x := e.exporter(t, e.options(nil))
	due, err := x.DuePurges(ctx)
	if err != nil {
		t.Fatal(err)
	}
	wantDue := map[string]bool{confirmed.ID: true, missing.ID: false, altered.ID: false}
	if len(due) != len(wantDue) {
		t.Fatalf("DuePurges listed %d sessions, want %d", len(due), len(wantDue))
	}
	for _, d := range due {
		if want, ok := wantDue[d.Session.ID]; !ok || d.Confirmed != want {
			t.Errorf("due %s confirmed=%v (%s), want %v", d.Session.Room, d.Confirmed, d.Reason, want)
		}
	}
	if e.messageCount(t, confirmed.ID) != 7 {
		t.Fatal("dry run deleted messages")
	}

	now := chat.Now()
	r, err := x.PurgeAll(ctx, now, nil)
	if err != nil {
		t.Fatal(err)
	}
	if r != (transcript.PurgeReport{Purged: 1, Unconfirmed: 2}) {
		t.Fatalf("report %+v", r)
	}
	tests := []struct {
		name     string
		id       string
		messages int
		purged   bool
	}{
		{"Confirmed", confirmed.ID, 0, true},
		{"ArchiveMissing", missing.ID, 5, false},
		{"ArchiveAltered", altered.ID, 5, false},
		{"InProgress", live.ID, 3, false},
		{"Ending", ending.ID, 3, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := e.messageCount(t, tc.id); got != tc.messages {
				t.Errorf("%d messages left, want %d", got, tc.messages)
			}
			if got := !e.session(t, tc.id).PurgedAt.IsZero(); got != tc.purged {
				t.Errorf("purged = %v, want %v", got, tc.purged)
			}
		})
	}
	// The transcript outlives the messages.
	rc, err := e.archive.Open(ctx, confirmed.Archive.Key)
	if err != nil {
		t.Fatal(err)
	}
	csvBody, _ := io.ReadAll(rc)
	rc.Close()
	if int64(len(csvBody)) != confirmed.Archive.Size {
		t.Fatal("archived transcript changed by the purge")
	}
	// Purging twice is harmless: nothing more is purged, the first time is kept.
	n, err := x.Purge(ctx, now.Add(time.Hour))
	if err != nil || n != 0 {
		t.Fatalf("second purge: %d, %v", n, err)
	}
	if got := e.session(t, confirmed.ID).PurgedAt; !got.Equal(now) {
		t.Fatalf("purge time changed to %v", got)
	}
}

func TestPurgeManyPages(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	// More unconfirmed sessions than one page, then confirmed ones after them: the
	// purge must page past the ones it keeps.
	// Unarchived objects are recorded straight on the sessions (no export needed).
	var keep []string
	for i := range 105 {
		s := e.chatSession(t, fmt.Sprintf("bad%d", i), host, participant, 1, true)
		obj := chat.ArchiveObject{Key: chat.ArchiveKey(s.ID), Size: 10, SHA256: "00"}
		if err := e.db.RecordArchive(ctx, s.ID, obj, 1); err != nil {
			t.Fatal(err)
		}
		if err := e.db.Complete(ctx, s.ID, transcript.Link(s.ID), chat.Now()); err != nil {
			t.Fatal(err)
		}
		keep = append(keep, s.ID)
	}
	good := e.exported(t, "good", 2)
	x := e.exporter(t, e.options(nil))
	r, err := x.PurgeAll(ctx, chat.Now(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if r.Purged != 1 || r.Unconfirmed != len(keep) {
		t.Fatalf("report %+v, want 1 purged, %d unconfirmed", r, len(keep))
	}
	if e.messageCount(t, good.ID) != 0 {
		t.Fatal("confirmed session after a page of unconfirmed ones was not purged")
	}
}

func TestSweeperAndQueueFinishEndingSessions(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	e := newEnv(t)
	// Two sessions ended while "the process was down": nothing was enqueued.
	a := e.chatSession(t, "downa", host, participant, 3, true)
	b := e.chatSession(t, "downb", host, "", 2, true)

	x := e.exporter(t, e.options(nil))
	q, err := memqueue.New(x, memqueue.Options{PurgeSchedule: "-", RetryBase: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	q.Start(ctx)
	sw, err := transcript.NewSweeper(transcript.SweeperOptions{Sessions: e.db, Queue: q, Interval: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- sw.Run(ctx) }()
	testenv.Eventually(t, 10*time.Second, func() bool {
		return e.session(t, a.ID).Status == chat.StatusCompleted && e.session(t, b.ID).Status == chat.StatusCompleted
	}, "both sessions completed")
	testenv.Eventually(t, 10*time.Second, func() bool { return q.Pending() == 0 }, "queue drained")
	if n := len(e.mails(t)); n != 3 {
		t.Fatalf("%d emails, want 3 (sweeps repeat, emails do not)", n)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// every is a sub-second cron schedule for tests.
type every time.Duration

func (d every) Next(t time.Time) time.Time { return t.Add(time.Duration(d)) }

func TestScheduledPurge(t *testing.T) {
	e := newEnv(t)
	s := e.exported(t, "nightly", 4)
	x := e.exporter(t, e.options(nil))
	q, err := memqueue.New(x, memqueue.Options{Schedule: every(20 * time.Millisecond)})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	q.Start(context.Background())
	testenv.Eventually(t, 10*time.Second, func() bool { return !e.session(t, s.ID).PurgedAt.IsZero() }, "scheduled purge")
	if e.messageCount(t, s.ID) != 0 {
		t.Fatal("messages left after the scheduled purge")
	}
}
