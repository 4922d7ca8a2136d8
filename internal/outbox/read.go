package outbox

import (
	"encoding/base64"
	"io"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net/mail"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"parley/internal/chat"
)

// Summary is one outbox email as listed at /dev/mail.
type Summary struct {
	Name    string // file name, the email's id in /dev/mail/{name}
	Time    time.Time
	To      string
	Subject string
}

// Email is one outbox email read back: headers decoded, bodies decoded from their
// transfer encoding.
type Email struct {
	Summary
	From      string
	MessageID string
	Headers   mail.Header // all headers, raw, for inspection in tests
	Text      string
	HTML      string
}

// namePattern matches the files Send writes, and nothing else: the only names Read
// accepts, so a request cannot reach outside the folder.
var namePattern = regexp.MustCompile(`^[0-9]{8}T[0-9]{6}\.[0-9]{9}Z-[0-9a-f]{8}\.eml$`)

// ValidName reports whether name is an outbox file name.
func ValidName(name string) bool { return namePattern.MatchString(name) }

// List returns the emails in dir, newest first, at most limit (all when limit <= 0).
// A missing folder is an empty outbox.
func List(dir string, limit int) ([]Summary, error) {
	emails, err := ListEmails(dir, limit)
	if err != nil {
		return nil, err
	}
	out := make([]Summary, len(emails))
	for i, e := range emails {
		out[i] = e.Summary
	}
	return out, nil
}

// ListEmails is List with each email read in full.
func ListEmails(dir string, limit int) ([]*Email, error) {
	entries, err := os.ReadDir(dir)
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, chat.Wrap(chat.EUnavailable, err, "cannot list outbox")
	}
	var names []string
	for _, e := range entries {
		if e.Type().IsRegular() && ValidName(e.Name()) {
			names = append(names, e.Name())
		}
	}
	slices.Sort(names)
	slices.Reverse(names)
	if limit > 0 && len(names) > limit {
		names = names[:limit]
	}
	out := make([]*Email, 0, len(names))
	for _, n := range names {
		e, err := Read(dir, n)
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, nil
}

// Read parses the email named name in dir, or returns ENotFound.
func Read(dir, name string) (*Email, error) {
	if !ValidName(name) {
		return nil, chat.Errorf(chat.ENotFound, "There is no such email in the outbox.")
	}
	f, err := os.Open(filepath.Join(dir, name))
	if os.IsNotExist(err) {
		return nil, chat.Errorf(chat.ENotFound, "There is no such email in the outbox.")
	}
	if err != nil {
		return nil, chat.Wrap(chat.EUnavailable, err, "cannot read outbox")
	}
	defer f.Close()
	msg, err := mail.ReadMessage(f)
	if err != nil {
		return nil, chat.Wrap(chat.EInternal, err, "cannot parse outbox email %s", name)
	}
	e := &Email{Summary: Summary{Name: name}, Headers: msg.Header}
	e.fillHeaders(msg.Header)
	if err := e.readBody(mimeHeader(msg.Header), msg.Body); err != nil {
		return nil, chat.Wrap(chat.EInternal, err, "cannot parse outbox email %s", name)
	}
	return e, nil
}

// fillHeaders decodes the headers shown to people.
func (e *Email) fillHeaders(h mail.Header) {
	dec := new(mime.WordDecoder)
	decode := func(k string) string {
		v, err := dec.DecodeHeader(h.Get(k))
		if err != nil {
			return h.Get(k)
		}
		return v
	}
	e.To, e.From, e.Subject, e.MessageID = bareAddress(decode("To")), decode("From"), decode("Subject"), h.Get("Message-ID")
	if t, err := h.Date(); err == nil {
		e.Time = t.UTC()
	}
}

// bareAddress turns "<a@example.com>" into "a@example.com"; anything else is kept.
func bareAddress(s string) string {
	if a, err := mail.ParseAddress(s); err == nil && a.Name == "" {
		return a.Address
	}
	return s
}

// mimeHeader adapts a mail.Header to what readBody needs.
func mimeHeader(h mail.Header) map[string][]string { return h }

// readBody fills Text and HTML from a single-part or multipart body.
func (e *Email) readBody(h map[string][]string, body io.Reader) error {
	get := func(k string) string {
		if v := h[k]; len(v) > 0 {
			return v[0]
		}
		return ""
	}
	mediaType, params, err := mime.ParseMediaType(get("Content-Type"))
	if err != nil {
		mediaType = "text/plain"
	}
	if !strings.HasPrefix(mediaType, "multipart/") {
		text, err := decodePart(get("Content-Transfer-Encoding"), body)
		if err != nil {
			return err
		}
		e.setPart(mediaType, text)
		return nil
	}
	mr := multipart.NewReader(body, params["boundary"])
	for {
		p, err := mr.NextPart() // NextPart undoes quoted-printable itself
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if err := e.readBody(p.Header, p); err != nil {
			return err
		}
	}
}

// setPart keeps the first text and the first HTML body, with line ends as in Go.
func (e *Email) setPart(mediaType, text string) {
	text = strings.ReplaceAll(text, "\r\n", "\n")
	switch {
	case mediaType == "text/html" && e.HTML == "":
		e.HTML = text
	case mediaType == "text/plain" && e.Text == "":
		e.Text = text
	}
}

// decodePart undoes the part's transfer encoding and returns the text. (The multipart
// reader undoes quoted-printable itself and then drops the header, so nothing is
// decoded twice.)
func decodePart(encoding string, r io.Reader) (string, error) {
	switch strings.ToLower(strings.TrimSpace(encoding)) {
	case "base64":
		r = base64.NewDecoder(base64.StdEncoding, stripNewlines{r})
	case "quoted-printable":
		r = quotedprintable.NewReader(r)
	}
	b, err := io.ReadAll(r)
	return string(b), err
}

// stripNewlines drops CR and LF so base64 bodies broken into lines decode.
type stripNewlines struct{ r io.Reader }

// Read implements io.Reader.
func (s stripNewlines) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	j := 0
	for _, c := range p[:n] {
		if c != '\r' && c != '\n' {
			p[j] = c
			j++
		}
	}
	return j, err
}
