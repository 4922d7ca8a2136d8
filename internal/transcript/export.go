package transcript

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v5"

	"parley/internal/atomicfile"
	"parley/internal/chat"
	"parley/internal/wire"
)

var _ chat.Jobs = (*Exporter)(nil)

// The steps of an export, in order, as named to Options.AfterStep. Each is reported
// once its effect is durable, so a test (or PARLEY_FAULT_AFTER_STEP) can stop the
// process between any two of them.
const (
	StepCSV               = "csv"      // the CSV is written and its copy kept in CSVDir
	StepArchive           = "archive"  // the archive holds the CSV
	StepRecorded          = "recorded" // the session records the archive object
	StepMailedHost        = "mailed:host"
	StepMailedParticipant = "mailed:participant"
	StepCompleted         = "completed" // the session is completed
)

// Steps lists every step in the order an export takes them.
var Steps = []string{StepCSV, StepArchive, StepRecorded, StepMailedHost, StepMailedParticipant, StepCompleted}

// Options are what an Exporter works with. Sessions, Messages, Archive and Mailer are
// required; the rest have defaults.
type Options struct {
	Sessions chat.SessionStore
	Messages chat.MessageStore
	Archive  chat.Archive
	Mailer   chat.Mailer
	Broker   chat.Broker      // tells open room pages the transcript is ready; nil: no one is told
	People   chat.PeopleStore // each recipient's time zone for the email; nil: UTC

	PublicURL string // scheme://host[:port] for absolute links in emails
	CSVDir    string // local copy of each transcript (PARLEY_CSV_FILES); "" keeps none

	Logger *slog.Logger
	Now    func() time.Time // clock; chat.Now when nil

	// AfterStep, when set, is called after each step (see Steps) with its name: the
	// fault-injection hook for crash tests. It may panic or kill the process.
	AfterStep func(step string)
}

// Exporter runs the end-of-chat export and the nightly purge (chat.Jobs).
type Exporter struct {
	o   Options
	log *slog.Logger
}

// NewExporter checks o and returns an Exporter.
func NewExporter(o Options) (*Exporter, error) {
	if o.Sessions == nil || o.Messages == nil || o.Archive == nil || o.Mailer == nil {
		return nil, chat.Errorf(chat.EInvalid, "transcript: sessions, messages, archive and mailer are required")
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = chat.Now
	}
	return &Exporter{o: o, log: o.Logger}, nil
}

// Export writes, archives and emails the transcript of an ending session and marks it
// completed. It is safe to run any number of times, and concurrently: runs of the same
// session in this process take turns (whichever Exporter runs them), and every step first checks what the session
// already records (a confirmed archive object is not written again; a recipient with a
// recorded mail time or failure is not emailed again; completing twice is harmless).
//
// Exactly-once email: the only window in which a crash can repeat an email is between
// Mailer.Send accepting it and RecordMail storing that fact. Nothing else happens in
// that window, and RecordMail is retried in place (briefly, even if ctx is cancelled)
// so a store hiccup does not widen it. Across processes, the queue's per-session task
// id keeps two workers from exporting one session at once.
//
// A session still in progress, or one that does not exist, is an EPermanent error.
func (e *Exporter) Export(ctx context.Context, sessionID string) error {
	unlock := exporting.lock(sessionID)
	defer unlock()
	s, err := e.o.Sessions.Session(ctx, sessionID)
	if chat.IsCode(err, chat.ENotFound) {
		return chat.Wrap(chat.EPermanent, err, "no session %s to export", sessionID)
	}
	if err != nil {
		return err
	}
	switch s.Status {
	case chat.StatusCompleted:
		return nil
	case chat.StatusInProgress:
		return chat.Errorf(chat.EPermanent, "session %s is still in progress; its transcript is not ready", sessionID)
	}
	if err := e.ensureArchived(ctx, s); err != nil {
		return err
	}
	if err := e.mailRecipients(ctx, s); err != nil {
		return err
	}
	if err := e.o.Sessions.Complete(ctx, s.ID, Link(s.ID), e.o.Now()); err != nil {
		return err
	}
	e.step(StepCompleted)
	e.log.Info("transcript exported", "session", s.ID, "messages", s.MessageCount, "bytes", s.Archive.Size)
	e.announce(ctx, s.ID)
	return nil
}

// ensureArchived makes sure the archive holds the session's transcript and the session
// records it, writing it only when the recorded object is missing or not confirmed.
// On return s.Archive and s.MessageCount are what the session records.
func (e *Exporter) ensureArchived(ctx context.Context, s *chat.Session) error {
	if s.Archive.Key != "" {
		ok, err := e.confirmed(ctx, s.Archive)
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
		e.log.Warn("recorded transcript not found in archive; exporting again", "session", s.ID)
	}
	var buf bytes.Buffer
	e.presize(ctx, &buf, s.ID)
	sum, err := Write(ctx, e.o.Messages, s, &buf)
	if err != nil {
		return err
	}
	if err := e.keepCSV(s.ID, buf.Bytes()); err != nil {
		return err
	}
	e.step(StepCSV)
	obj, err := e.o.Archive.Put(ctx, chat.ArchiveKey(s.ID), buf.Bytes())
	if err != nil {
		return err
	}
	if obj.Size != sum.Size || obj.SHA256 != sum.SHA256 {
		return chat.Errorf(chat.EUnavailable, "archive returned %d bytes sha256 %s for session %s, wrote %d bytes sha256 %s",
			obj.Size, obj.SHA256, s.ID, sum.Size, sum.SHA256)
	}
	e.step(StepArchive)
	if err := e.o.Sessions.RecordArchive(ctx, s.ID, obj, sum.Messages); err != nil {
		return err
	}
	e.step(StepRecorded)
	s.Archive, s.MessageCount = obj, sum.Messages
	return nil
}

// rowEstimate is a generous guess of a transcript row's size, used to size the buffer
// once instead of growing it by doubling (which costs a fifth of a long export's CPU).
const rowEstimate = 160

// presize grows buf to hold the session's transcript, judged by its last seq.
func (e *Exporter) presize(ctx context.Context, buf *bytes.Buffer, sessionID string) {
	last, err := e.o.Messages.LastSeq(ctx, sessionID)
	if err == nil && last > 0 {
		buf.Grow(int(min(last, 1_000_000)) * rowEstimate)
	}
}

// confirmed reports whether the archive holds obj with its recorded size and SHA-256.
// A missing object is not an error; an unreachable archive is.
func (e *Exporter) confirmed(ctx context.Context, obj chat.ArchiveObject) (bool, error) {
	got, err := e.o.Archive.Stat(ctx, obj.Key)
	if chat.IsCode(err, chat.ENotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return got.Size == obj.Size && got.SHA256 == obj.SHA256, nil
}

// keepCSV writes the local copy of a transcript (the PARLEY_CSV_FILES folder)
// atomically, so the folder never holds half a file.
func (e *Exporter) keepCSV(sessionID string, body []byte) error {
	if e.o.CSVDir == "" {
		return nil
	}
	if err := atomicfile.Write(filepath.Join(e.o.CSVDir, sessionID+".csv"), body); err != nil {
		return chat.Wrap(chat.EUnavailable, err, "cannot keep CSV copy of session %s", sessionID)
	}
	return nil
}

// recipient is one person to email and what the session records about them.
type recipient struct {
	role     chat.Role
	email    string
	mailedAt time.Time
	failure  string
	step     string
}

// recipients lists who gets the transcript: the host and, if one joined, the participant.
func recipients(s *chat.Session) []recipient {
	rs := []recipient{{chat.RoleHost, s.HostEmail, s.HostMailedAt, s.HostMailError, StepMailedHost}}
	if s.ParticipantEmail != "" {
		rs = append(rs, recipient{chat.RoleParticipant, s.ParticipantEmail, s.ParticipantMailedAt, s.ParticipantMailError, StepMailedParticipant})
	}
	return rs
}

// NothingToMail reports whether a chat ended with nothing anyone would want mailed:
// nobody joined and nothing was written. Its transcript is archived all the same, but
// no email goes out; the history page says "ended before anyone joined".
func NothingToMail(s *chat.Session) bool {
	return s.ParticipantEmail == "" && s.MessageCount == 0
}

// mailRecipients emails each recipient that has neither a mail time nor a failure
// recorded. A temporary failure stops the export (the queue retries it); a permanent
// one is recorded on the session so it shows on the history page.
func (e *Exporter) mailRecipients(ctx context.Context, s *chat.Session) error {
	if NothingToMail(s) {
		return nil
	}
	var conversation []chat.Message
	loaded, more := false, false
	for _, r := range recipients(s) {
		if !r.mailedAt.IsZero() || r.failure != "" {
			continue
		}
		if !loaded {
			page, err := e.o.Messages.Messages(ctx, s.ID, 0, MailMaxMessages+1)
			if err != nil {
				return err
			}
			more = len(page) > MailMaxMessages
			conversation, loaded = page[:min(len(page), MailMaxMessages)], true
		}
		in := MailInput{Session: s, Recipient: r.email, PublicURL: e.o.PublicURL, Messages: conversation, More: more}
		if loc, known := chat.ZoneOf(ctx, e.o.People, r.email); known {
			in.Zone = loc
		}
		msg, err := BuildEmail(in)
		if err != nil {
			return err
		}
		// The window: from here until RecordMail returns, a crash repeats this email.
		sendErr := e.o.Mailer.Send(ctx, msg)
		switch {
		case sendErr == nil:
			err = e.recordMail(ctx, s.ID, r.role, e.o.Now(), "")
		case chat.IsCode(sendErr, chat.EPermanent):
			e.log.Warn("transcript email refused", "session", s.ID, "role", r.role, "err", sendErr)
			err = e.recordMail(ctx, s.ID, r.role, time.Time{}, failureReason(sendErr))
		default:
			return sendErr
		}
		if err != nil {
			return err
		}
		e.step(r.step)
	}
	return nil
}

// recordMailTimeout bounds how long recordMail keeps trying after an accepted send.
const recordMailTimeout = 15 * time.Second

// recordMail stores a mail outcome right after the send. It runs even when ctx is
// already cancelled (the email is out; forgetting that is what would repeat it) and
// retries briefly with backoff, to keep the send-then-record window small.
func (e *Exporter) recordMail(ctx context.Context, id string, role chat.Role, at time.Time, failure string) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), recordMailTimeout)
	defer cancel()
	b := &backoff.ExponentialBackOff{InitialInterval: 50 * time.Millisecond, RandomizationFactor: 0.5, Multiplier: 2, MaxInterval: 2 * time.Second}
	_, err := backoff.Retry(ctx, func() (struct{}, error) {
		err := e.o.Sessions.RecordMail(ctx, id, role, at, failure)
		if err != nil && chat.IsCode(err, chat.ENotFound) {
			return struct{}{}, backoff.Permanent(err)
		}
		return struct{}{}, err
	}, backoff.WithBackOff(b), backoff.WithMaxElapsedTime(recordMailTimeout))
	if err != nil {
		e.log.Error("email sent but not recorded; a retry will send it again", "session", id, "role", role, "err", err)
	}
	return err
}

// failureReason is the text recorded for a refused address, shown on the history page.
func failureReason(err error) string {
	msg := chat.ErrorMessage(err)
	if len(msg) > 500 {
		msg = msg[:500]
	}
	return msg
}

// announce publishes the transcript frame to the session's open pages. A lost
// announcement costs nothing durable: the room page shows the link on its next load.
func (e *Exporter) announce(ctx context.Context, id string) {
	if e.o.Broker == nil {
		return
	}
	ev := chat.Event{Type: chat.EventTranscript, Session: id, Frame: wire.Transcript(Link(id))}
	if err := e.o.Broker.Publish(ctx, ev); err != nil {
		e.log.Warn("cannot announce transcript", "session", id, "err", err)
	}
}

// step reports a finished step to the fault-injection hook.
func (e *Exporter) step(name string) {
	if e.o.AfterStep != nil {
		e.o.AfterStep(name)
	}
}

// KillAfter returns an AfterStep hook that kills this process with SIGKILL (no
// deferred functions, no cleanup: a real crash) right after the named step. The CLI
// installs it when PARLEY_FAULT_AFTER_STEP is set, for crash tests.
func KillAfter(step string) func(string) {
	return func(s string) {
		if s != step {
			return
		}
		p, err := os.FindProcess(os.Getpid())
		if err == nil {
			_ = p.Kill() // SIGKILL on Unix
		}
		select {} // never continue past the step
	}
}

// exporting serialises exports of the same session within this process.
var exporting = sessionLocks{m: make(map[string]*sessionLock)}

// sessionLocks is a lock per session id, kept only while someone holds or waits for it.
type sessionLocks struct {
	mu sync.Mutex
	m  map[string]*sessionLock
}

type sessionLock struct {
	mu    sync.Mutex
	users int
}

// lock takes the session's lock and returns its release.
func (l *sessionLocks) lock(id string) (unlock func()) {
	l.mu.Lock()
	sl := l.m[id]
	if sl == nil {
		sl = &sessionLock{}
		l.m[id] = sl
	}
	sl.users++
	l.mu.Unlock()
	sl.mu.Lock()
	return func() {
		sl.mu.Unlock()
		l.mu.Lock()
		if sl.users--; sl.users == 0 {
			delete(l.m, id)
		}
		l.mu.Unlock()
	}
}
