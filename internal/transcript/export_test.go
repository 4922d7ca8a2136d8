package transcript_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"parley/internal/chat"
	"parley/internal/testenv"
	"parley/internal/transcript"
)

const (
	host        = "host@example.com"
	participant = "guest@example.com"
)

// checkDone asserts what a finished export leaves: the session completed with its
// link, one archive object matching the record and the CSV copy, and exactly one email
// to each recipient with the absolute link.
func checkDone(t *testing.T, e *env, id string, wantMessages int64, recipients ...string) *chat.Session {
	t.Helper()
	ctx := context.Background()
	s := e.session(t, id)
	if s.Status != chat.StatusCompleted || s.ChatHistory != "/transcripts/"+id || s.CompletedAt.IsZero() {
		t.Fatalf("session not completed: status %s, link %q, completed %v", s.Status, s.ChatHistory, s.CompletedAt)
	}
	if s.MessageCount != wantMessages {
		t.Errorf("message count %d, want %d", s.MessageCount, wantMessages)
	}
	if files := e.archiveFiles(t); len(files) != 1 || files[0] != id+".csv" {
		t.Errorf("archive holds %v, want one object %s.csv", files, id)
	}
	got, err := e.archive.Stat(ctx, chat.ArchiveKey(id))
	if err != nil || got != s.Archive {
		t.Fatalf("archive %+v (%v) does not match recorded %+v", got, err, s.Archive)
	}
	local, err := os.ReadFile(filepath.Join(e.csvDir, id+".csv"))
	if err != nil {
		t.Fatal(err)
	}
	if h := sha256.Sum256(local); hex.EncodeToString(h[:]) != s.Archive.SHA256 {
		t.Errorf("CSV_FILES copy differs from the archived transcript")
	}
	mails := e.mails(t)
	if len(mails) != len(recipients) {
		t.Fatalf("%d emails, want %d (one per recipient)", len(mails), len(recipients))
	}
	for i, m := range mails {
		if !strings.Contains(m.To, recipients[i]) {
			t.Errorf("email %d to %q, want %q", i, m.To, recipients[i])
		}
		if !strings.Contains(m.Text, publicURL+"/transcripts/"+id) || !strings.Contains(m.HTML, publicURL+"/transcripts/"+id) {
			t.Errorf("email %d lacks the absolute link:\n%s", i, m.Text)
		}
	}
	return s
}

func TestExportTwice(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	s := e.chatSession(t, "twice", host, participant, 25, true)
	var frames [][]byte
	var mu sync.Mutex
	cancel, err := e.bus.Subscribe(ctx, s.ID, func(ev chat.Event) {
		if ev.Type == chat.EventTranscript {
			mu.Lock()
			frames = append(frames, ev.Frame)
			mu.Unlock()
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer cancel()

	x := e.exporter(t, e.options(nil))
	if err := x.Export(ctx, s.ID); err != nil {
		t.Fatal(err)
	}
	first := checkDone(t, e, s.ID, 25, host, participant)
	if err := x.Export(ctx, s.ID); err != nil {
		t.Fatal(err)
	}
	second := checkDone(t, e, s.ID, 25, host, participant)
	if first.Archive != second.Archive || !first.CompletedAt.Equal(second.CompletedAt) {
		t.Fatalf("second run changed the record: %+v -> %+v", first.Archive, second.Archive)
	}
	testenv.Eventually(t, 10*time.Second, func() bool { mu.Lock(); defer mu.Unlock(); return len(frames) == 1 }, "transcript frame")
	var f struct{ Type, URL string }
	if err := json.Unmarshal(frames[0], &f); err != nil || f.Type != "transcript" || f.URL != "/transcripts/"+s.ID {
		t.Fatalf("frame %s", frames[0])
	}
}

func TestExportConcurrent(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	s := e.chatSession(t, "concurrent", host, participant, 10, true)
	x := e.exporter(t, e.options(nil))
	other := e.exporter(t, e.options(nil)) // a second exporter on the same stores
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if i%4 == 3 {
				errs <- other.Export(ctx, s.ID)
				return
			}
			errs <- x.Export(ctx, s.ID)
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	checkDone(t, e, s.ID, 10, host, participant)
}

func TestExportErrors(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	live := e.chatSession(t, "live", host, participant, 3, false)
	x := e.exporter(t, e.options(nil))
	tests := []struct {
		name string
		id   string
		want string
	}{
		{"InProgress", live.ID, chat.EPermanent},
		{"Unknown", chat.NewSessionID(), chat.EPermanent},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := x.Export(ctx, tc.id); chat.ErrorCode(err) != tc.want {
				t.Fatalf("Export: %v, want %s", err, tc.want)
			}
		})
	}
	if n := len(e.mails(t)); n != 0 {
		t.Fatalf("%d emails sent for sessions not ready", n)
	}
}

func TestExportNoParticipant(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	s := e.chatSession(t, "alone", host, "", 2, true)
	if err := e.exporter(t, e.options(nil)).Export(ctx, s.ID); err != nil {
		t.Fatal(err)
	}
	checkDone(t, e, s.ID, 2, host)
	if m := e.mails(t)[0]; !strings.Contains(m.Text, "no one else joined") {
		t.Fatalf("email body:\n%s", m.Text)
	}
}

func TestExportEmptyChat(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	s := e.chatSession(t, "empty", host, participant, 0, true)
	if err := e.exporter(t, e.options(nil)).Export(ctx, s.ID); err != nil {
		t.Fatal(err)
	}
	got := checkDone(t, e, s.ID, 0, host, participant)
	rc, _ := e.archive.Open(ctx, got.Archive.Key)
	body, _ := io.ReadAll(rc)
	rc.Close()
	end := got.EndedAt.UTC().Format(transcript.TimeLayout)
	want := transcript.BOM + strings.Join(transcript.Header, ",") + "\r\n" +
		",," + end + "," + host + "," + participant + ",empty,ended,Chat ended by " + host + "\r\n"
	if string(body) != want {
		t.Fatalf("empty transcript %q, want the header and the end row only: %q", body, want)
	}
}

// flakyMailer sends through the outbox but fails as scripted per recipient.
type flakyMailer struct {
	next      chat.Mailer
	mu        sync.Mutex
	temporary map[string]int // recipient -> failures left
	refuse    map[string]bool
}

func (m *flakyMailer) Send(ctx context.Context, em chat.Email) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.refuse[em.To] {
		return chat.Errorf(chat.EPermanent, "mailbox %s does not exist", em.To)
	}
	if m.temporary[em.To] > 0 {
		m.temporary[em.To]--
		return chat.Errorf(chat.EUnavailable, "mail server busy")
	}
	return m.next.Send(ctx, em)
}

func TestExportMailFailures(t *testing.T) {
	ctx := context.Background()
	t.Run("TemporaryThenOK", func(t *testing.T) {
		e := newEnv(t)
		s := e.chatSession(t, "busy", host, participant, 4, true)
		m := &flakyMailer{next: e.outbox, temporary: map[string]int{participant: 2}}
		x := e.exporter(t, e.options(m))
		for i := range 2 {
			if err := x.Export(ctx, s.ID); !chat.IsCode(err, chat.EUnavailable) {
				t.Fatalf("run %d: %v, want unavailable", i, err)
			}
		}
		if got := e.session(t, s.ID); got.Status != chat.StatusEnding || got.HostMailedAt.IsZero() {
			t.Fatalf("after failures: status %s, host mailed %v", got.Status, got.HostMailedAt)
		}
		if err := x.Export(ctx, s.ID); err != nil {
			t.Fatal(err)
		}
		checkDone(t, e, s.ID, 4, host, participant)
	})
	t.Run("PermanentIsRecorded", func(t *testing.T) {
		e := newEnv(t)
		s := e.chatSession(t, "refused", host, participant, 4, true)
		m := &flakyMailer{next: e.outbox, refuse: map[string]bool{host: true}}
		if err := e.exporter(t, e.options(m)).Export(ctx, s.ID); err != nil {
			t.Fatal(err)
		}
		got := checkDone(t, e, s.ID, 4, participant)
		if got.HostMailError == "" || !got.HostMailedAt.IsZero() || got.ParticipantMailedAt.IsZero() {
			t.Fatalf("host error %q mailed %v, participant mailed %v", got.HostMailError, got.HostMailedAt, got.ParticipantMailedAt)
		}
	})
}

// crash is what the fault hook panics with, standing in for the process dying.
type crash string

// exportUntilCrash runs an export whose AfterStep hook "crashes" after step, and
// reports whether it did.
func exportUntilCrash(e *env, t *testing.T, id, step string) (crashed bool) {
	o := e.options(nil)
	o.AfterStep = func(s string) {
		if s == step {
			panic(crash(s))
		}
	}
	x := e.exporter(t, o)
	defer func() {
		if r := recover(); r != nil {
			if _, ok := r.(crash); !ok {
				panic(r)
			}
			crashed = true
		}
	}()
	if err := x.Export(context.Background(), id); err != nil {
		t.Fatalf("export before crash: %v", err)
	}
	return false
}

func TestExportCrashAfterEachStep(t *testing.T) {
	for _, step := range transcript.Steps {
		t.Run(step, func(t *testing.T) {
			e := newEnv(t)
			s := e.chatSession(t, "crash", host, participant, 30, true)
			if !exportUntilCrash(e, t, s.ID, step) {
				t.Fatalf("step %q never reached", step)
			}
			// A new process: a fresh exporter over the same stores, run twice.
			x := e.exporter(t, e.options(nil))
			for range 2 {
				if err := x.Export(context.Background(), s.ID); err != nil {
					t.Fatal(err)
				}
			}
			checkDone(t, e, s.ID, 30, host, participant)
		})
	}
}

func TestExportRewritesMissingArchive(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	s := e.chatSession(t, "lost", host, participant, 5, true)
	if !exportUntilCrash(e, t, s.ID, transcript.StepRecorded) {
		t.Fatal("no crash")
	}
	before := e.session(t, s.ID).Archive
	if err := os.Remove(filepath.Join(e.archive.Dir(), "transcripts", s.ID+".csv")); err != nil {
		t.Fatal(err)
	}
	if err := e.exporter(t, e.options(nil)).Export(ctx, s.ID); err != nil {
		t.Fatal(err)
	}
	after := checkDone(t, e, s.ID, 5, host, participant)
	if after.Archive != before {
		t.Fatalf("rewritten archive %+v differs from the first %+v (CSV must be deterministic)", after.Archive, before)
	}
}

func TestBuildEmail(t *testing.T) {
	s := &chat.Session{ID: "abc123", Room: "r", HostEmail: "o'neil@example.com", ParticipantEmail: "bo@example.com",
		MessageCount: 42, Status: chat.StatusEnding, EndedBy: "bo@example.com",
		InitiatedAt: time.Date(2026, 11, 27, 23, 30, 0, 0, time.UTC), EndedAt: time.Date(2026, 11, 27, 23, 50, 0, 0, time.UTC)}
	msgs := []chat.Message{
		{Seq: 1, From: "o'neil@example.com", To: "bo@example.com", Kind: chat.KindChat, Text: "<script>alert(1)</script> & hi 👋",
			CreatedAt: time.Date(2026, 11, 27, 23, 31, 0, 0, time.UTC)},
		{Seq: 2, From: "bo@example.com", To: "o'neil@example.com", Kind: chat.KindBye, Text: chat.ByeText,
			CreatedAt: time.Date(2026, 11, 27, 23, 45, 0, 0, time.UTC)},
	}
	tokyo, err := time.LoadLocation("Asia/Tokyo")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, to, peer string
		zone           *time.Location
		want           []string // in both parts
	}{
		{"HostInUTC", "o'neil@example.com", "bo@example.com", nil,
			[]string{"27 Nov 2026 23:30 UTC", "23:31", "Times are in UTC"}},
		{"ParticipantInTokyo", "bo@example.com", "o&#39;neil@example.com", tokyo,
			[]string{"28 Nov 2026 08:30 JST", "Asia/Tokyo"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m, err := transcript.BuildEmail(transcript.MailInput{Session: s, Recipient: tc.to,
				PublicURL: "https://chat.example.com/", Messages: msgs, Zone: tc.zone})
			if err != nil {
				t.Fatal(err)
			}
			if m.To != tc.to || m.Subject != "Your Parley chat in room r — transcript" {
				t.Fatalf("to %q subject %q", m.To, m.Subject)
			}
			for _, want := range append(tc.want, "https://chat.example.com/transcripts/abc123", "42", chat.ByeText) {
				if !strings.Contains(m.Text, want) || !strings.Contains(m.HTML, want) {
					t.Errorf("email lacks %q:\n%s\n%s", want, m.Text, m.HTML)
				}
			}
			if !strings.Contains(m.HTML, tc.peer) {
				t.Errorf("HTML lacks escaped peer %q:\n%s", tc.peer, m.HTML)
			}
			if strings.Contains(m.HTML, "<script>") || !strings.Contains(m.HTML, "&lt;script&gt;alert(1)&lt;/script&gt; &amp; hi 👋") {
				t.Errorf("HTML part does not carry the message escaped:\n%s", m.HTML)
			}
			if !strings.Contains(m.Text, "<script>alert(1)</script> & hi 👋") {
				t.Errorf("text part does not carry the message as written:\n%s", m.Text)
			}
		})
	}
}

// TestBuildEmailTruncates: a chat longer than an email carries shows its first
// messages, says that it goes on, and still gives the link.
func TestBuildEmailTruncates(t *testing.T) {
	s := &chat.Session{ID: "abc", Room: "r", HostEmail: "a@example.com", ParticipantEmail: "b@example.com"}
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	var msgs []chat.Message
	for i := range transcript.MailMaxMessages + 5 {
		msgs = append(msgs, chat.Message{Seq: int64(i + 1), From: "a@example.com", Kind: chat.KindChat,
			Text: fmt.Sprintf("line-%d", i+1), CreatedAt: at})
	}
	m, err := transcript.BuildEmail(transcript.MailInput{Session: s, Recipient: "a@example.com", Messages: msgs})
	if err != nil {
		t.Fatal(err)
	}
	last := fmt.Sprintf("line-%d\n", transcript.MailMaxMessages)
	if !strings.Contains(m.Text, last) || strings.Contains(m.Text, fmt.Sprintf("line-%d\n", transcript.MailMaxMessages+1)) ||
		!strings.Contains(m.Text, "the chat goes on") || !strings.Contains(m.Text, "/transcripts/abc") {
		t.Fatalf("long chat email:\n%s", m.Text[len(m.Text)-600:])
	}
	big := []chat.Message{{From: "a@example.com", Text: strings.Repeat("x", transcript.MailMaxTextBytes+1), CreatedAt: at}}
	m, err = transcript.BuildEmail(transcript.MailInput{Session: s, Recipient: "a@example.com", Messages: big})
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Text) > transcript.MailMaxTextBytes || !strings.Contains(m.Text, "the chat goes on") {
		t.Fatalf("an over-long message was copied into the email (%d bytes)", len(m.Text))
	}
}

// countingMailer counts sends, to check a fresh exporter sends nothing more.
type countingMailer struct {
	next chat.Mailer
	n    atomic.Int64
}

func (c *countingMailer) Send(ctx context.Context, m chat.Email) error {
	c.n.Add(1)
	return c.next.Send(ctx, m)
}

func TestExportCompletedSendsNothing(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	s := e.chatSession(t, "done", host, participant, 3, true)
	if err := e.exporter(t, e.options(nil)).Export(ctx, s.ID); err != nil {
		t.Fatal(err)
	}
	c := &countingMailer{next: e.outbox}
	if err := e.exporter(t, e.options(c)).Export(ctx, s.ID); err != nil {
		t.Fatal(err)
	}
	if c.n.Load() != 0 {
		t.Fatalf("a completed session was mailed %d more times", c.n.Load())
	}
	var buf bytes.Buffer
	if _, err := transcript.Write(ctx, e.db, e.session(t, s.ID), &buf); err != nil {
		t.Fatal(err)
	}
	if h := sha256.Sum256(buf.Bytes()); fmt.Sprintf("%x", h) != e.session(t, s.ID).Archive.SHA256 {
		t.Fatal("re-rendering gives a different CSV")
	}
}

// TestExportNobodyJoined: a chat that ended before anyone joined, with nothing
// written, is completed and archived, but nobody is mailed an empty transcript.
func TestExportNobodyJoined(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	s := e.chatSession(t, "lonely", host, "", 0, true)
	if err := e.exporter(t, e.options(nil)).Export(ctx, s.ID); err != nil {
		t.Fatal(err)
	}
	got := checkDone(t, e, s.ID, 0)
	rc, err := e.archive.Open(ctx, got.Archive.Key)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(rc)
	rc.Close()
	if !strings.HasSuffix(string(body), ",lonely,ended,Chat ended before anyone joined\r\n") {
		t.Fatalf("transcript %q lacks the end row", body)
	}
}

// TestExportFillsRecipient: messages the host wrote before the participant entered
// were stored without a recipient; the transcript names the participant on them too.
func TestExportFillsRecipient(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	s, _, err := e.db.Enter(ctx, "early", host, chat.Now())
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.db.Append(ctx, chat.Message{SessionID: s.ID, ClientID: "first", From: host, Room: "early",
		Kind: chat.KindChat, Text: "anyone there?"}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.db.Enter(ctx, "early", participant, chat.Now()); err != nil {
		t.Fatal(err)
	}
	if _, err := e.db.End(ctx, s.ID, participant, chat.Now()); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if _, err := transcript.Write(ctx, e.db, e.session(t, s.ID), &buf); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(buf.String(), "\r\n"), "\r\n")
	if len(lines) != 3 {
		t.Fatalf("transcript %q, want header, message, end", buf.String())
	}
	if !strings.Contains(lines[1], ","+host+","+participant+",early,chat,anyone there?") {
		t.Errorf("first message row %q does not name its recipient", lines[1])
	}
	if !strings.Contains(lines[2], ","+participant+","+host+",early,ended,Chat ended by "+participant) {
		t.Errorf("end row %q", lines[2])
	}
}

// TestExportMailsInRecipientZone: each recipient's email gives the times in the zone
// stored with them, and says which; a recipient with none gets UTC, said so.
func TestExportMailsInRecipientZone(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	if err := e.db.SetTimeZone(ctx, host, "America/New_York"); err != nil {
		t.Fatal(err)
	}
	s := e.chatSession(t, "zones", host, participant, 2, true)
	o := e.options(nil)
	o.People = e.db
	if err := e.exporter(t, o).Export(ctx, s.ID); err != nil {
		t.Fatal(err)
	}
	mails := e.mails(t)
	ny, _ := time.LoadLocation("America/New_York")
	if len(mails) != 2 || !strings.Contains(mails[0].Text, "America/New_York") ||
		!strings.Contains(mails[0].Text, s.InitiatedAt.In(ny).Format("2 Jan 2006 15:04 MST")) {
		t.Fatalf("host email not in New York time:\n%s", mails[0].Text)
	}
	if !strings.Contains(mails[1].Text, "Times are in UTC") || !strings.Contains(mails[1].Text, "message 1, with") {
		t.Fatalf("participant email:\n%s", mails[1].Text)
	}
}
