// Package outbox is the embedded mailer: each email becomes an .eml file in a local
// folder instead of going to a mail server, so a newcomer running Parley with nothing
// installed sees exactly what would have been sent (listed at /dev/mail). Messages are
// composed by go-mail, the same library the SMTP mailer uses, so headers are encoded by
// a mail library and a CR/LF in a subject or address can never add a header.
package outbox

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/wneessen/go-mail"

	"parley/internal/chat"
)

var _ chat.Mailer = (*Outbox)(nil)

// DefaultFrom is the sender address used when none is configured.
const DefaultFrom = "Parley <parley@localhost>"

// Outbox writes emails as .eml files into one folder.
type Outbox struct {
	dir  string
	from string
	now  func() time.Time
	log  *slog.Logger
}

// Options configure an Outbox. Zero values get defaults.
type Options struct {
	Dir    string           // the outbox folder (required); created if missing
	From   string           // sender address; DefaultFrom when empty
	Now    func() time.Time // clock for the Date header and file names; time.Now when nil
	Logger *slog.Logger
}

// New returns an outbox writing into o.Dir.
func New(o Options) (*Outbox, error) {
	if o.Dir == "" {
		return nil, chat.Errorf(chat.EInvalid, "outbox folder not set")
	}
	if err := os.MkdirAll(o.Dir, 0o750); err != nil {
		return nil, chat.Wrap(chat.EUnavailable, err, "cannot create outbox folder")
	}
	if o.From == "" {
		o.From = DefaultFrom
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return &Outbox{dir: o.Dir, from: o.From, now: o.Now, log: o.Logger}, nil
}

// Dir returns the outbox folder.
func (o *Outbox) Dir() string { return o.dir }

// Send writes e as one .eml file. An address go-mail refuses is a permanent failure
// (retrying cannot fix it); a write failure is temporary.
func (o *Outbox) Send(ctx context.Context, e chat.Email) error {
	if err := ctx.Err(); err != nil {
		return chat.Wrap(chat.EUnavailable, err, "send cancelled")
	}
	now := o.now().UTC()
	m, err := Compose(o.from, e, now)
	if err != nil {
		return err
	}
	name := fileName(now)
	f, err := os.CreateTemp(o.dir, ".tmp-*")
	if err != nil {
		return chat.Wrap(chat.EUnavailable, err, "cannot write to outbox")
	}
	defer os.Remove(f.Name())
	_, werr := m.WriteTo(f)
	if werr == nil {
		werr = f.Sync()
	}
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr == nil {
		werr = os.Rename(f.Name(), filepath.Join(o.dir, name))
	}
	if werr != nil {
		return chat.Wrap(chat.EUnavailable, werr, "cannot write to outbox")
	}
	o.log.Info("email written to outbox", "file", name)
	return nil
}

// Close releases nothing; it exists so the mailer shuts down like every component.
func (o *Outbox) Close() error { return nil }

// Compose builds the MIME message for e: plain text with an HTML alternative, a fresh
// Message-ID, the Date, and Auto-Submitted so auto-responders stay quiet (RFC 3834).
// Every header goes through go-mail's encoders. Both the outbox and the SMTP mailer
// use it, so what /dev/mail shows is what SMTP would send.
func Compose(from string, e chat.Email, now time.Time) (*mail.Msg, error) {
	m := mail.NewMsg(mail.WithNoDefaultUserAgent())
	if err := m.From(from); err != nil {
		return nil, chat.Wrap(chat.EInvalid, err, "invalid sender address")
	}
	if err := m.To(e.To); err != nil {
		return nil, chat.Wrap(chat.EPermanent, err, "invalid recipient address")
	}
	m.Subject(e.Subject)
	m.SetMessageID()
	m.SetDateWithValue(now)
	m.SetGenHeader(mail.Header("Auto-Submitted"), "auto-generated")
	m.SetBodyString(mail.TypeTextPlain, e.Text)
	if e.HTML != "" {
		m.AddAlternativeString(mail.TypeTextHTML, e.HTML)
	}
	return m, nil
}

// fileName names an email file by its time (UTC, nanoseconds, so names sort by time)
// and a random suffix; it holds no email address, which keeps addresses out of
// listings, logs and URLs.
func fileName(t time.Time) string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("%s-%s.eml", t.UTC().Format(nameTimeLayout), hex.EncodeToString(b[:]))
}

// nameTimeLayout is the time part of file names: fixed width, so names sort by time.
const nameTimeLayout = "20060102T150405.000000000Z"
