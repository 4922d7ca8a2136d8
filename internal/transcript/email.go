package transcript

import (
	"bytes"
	"fmt"
	htmltemplate "html/template"
	"strings"
	texttemplate "text/template"
	"time"

	"parley/internal/chat"
)

// The conversation is copied into the transcript email up to these bounds; a longer
// chat shows its first messages and says that the rest is in the CSV behind the link.
// They keep the email well under the 10 MB many mail servers accept and readable on a
// phone.
const (
	// MailMaxMessages is the most messages an email carries.
	MailMaxMessages = 200
	// MailMaxTextBytes is the most message text (UTF-8 bytes, all messages together)
	// an email carries.
	MailMaxTextBytes = 64 << 10
)

// MailInput is what one transcript email is made of.
type MailInput struct {
	Session   *chat.Session
	Recipient string
	PublicURL string // scheme://host[:port]

	// Messages are the chat's first messages, oldest first; More tells that the chat
	// has messages beyond them.
	Messages []chat.Message
	More     bool

	// Zone is the recipient's time zone; nil (not known) writes times in UTC and says so.
	Zone *time.Location
}

// mailView is what the transcript email says to one recipient.
type mailView struct {
	Room      string
	Peer      string // the other party, or "" when no one joined
	Started   string
	Ended     string
	EndedBy   string
	Messages  int64
	Link      string
	ZoneNote  string // which zone the times are in
	Lines     []mailLine
	Truncated bool // the email shows only the first part of the chat
	Shown     int
}

// mailLine is one message as the email shows it.
type mailLine struct {
	Time string // HH:MM, or the date too when the chat crosses midnight
	From string
	Text string
	Bye  bool
}

// emailTimeLayout is how times appear in emails: unambiguous, with the zone.
const emailTimeLayout = "2 Jan 2006 15:04 MST"

var textMail = texttemplate.Must(texttemplate.New("text").Parse(`Hello,

your Parley chat in room {{.Room}} has ended.

With:     {{if .Peer}}{{.Peer}}{{else}}(no one else joined){{end}}
Started:  {{.Started}}
Ended:    {{.Ended}}{{if .EndedBy}} by {{.EndedBy}}{{end}}
Messages: {{.Messages}}
{{.ZoneNote}}
{{if or .Lines .Truncated}}
The conversation{{if .Truncated}} (the first {{.Shown}} messages){{end}}:
{{range .Lines}}
[{{.Time}}] {{.From}}{{if .Bye}} (left){{end}}:
{{.Text}}
{{end}}{{if .Truncated}}
… the chat goes on; the whole conversation is in the transcript below.
{{end}}{{end}}
Download the transcript (CSV) here:
{{.Link}}

You will be asked to sign in with this email address.

-- 
Parley
`))

var htmlMail = htmltemplate.Must(htmltemplate.New("html").Parse(`<!DOCTYPE html>
<html><body style="font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif,'Apple Color Emoji','Segoe UI Emoji','Noto Color Emoji'">
<p>Hello,</p>
<p>your Parley chat in room <strong>{{.Room}}</strong> has ended.</p>
<table>
<tr><td>With</td><td>{{if .Peer}}{{.Peer}}{{else}}(no one else joined){{end}}</td></tr>
<tr><td>Started</td><td>{{.Started}}</td></tr>
<tr><td>Ended</td><td>{{.Ended}}{{if .EndedBy}} by {{.EndedBy}}{{end}}</td></tr>
<tr><td>Messages</td><td>{{.Messages}}</td></tr>
</table>
<p style="color:#666">{{.ZoneNote}}</p>
{{if or .Lines .Truncated}}
<h3>The conversation{{if .Truncated}} (the first {{.Shown}} messages){{end}}</h3>
<div>
{{range .Lines}}<p style="margin:0 0 .6em"><small style="color:#666">{{.Time}}</small> <strong>{{.From}}</strong>{{if .Bye}} <em>(left)</em>{{end}}<br><span style="white-space:pre-wrap">{{.Text}}</span></p>
{{end}}</div>
{{if .Truncated}}<p><em>… the chat goes on; the whole conversation is in the transcript below.</em></p>{{end}}
{{end}}
<p><a href="{{.Link}}">Download the transcript (CSV)</a></p>
<p>You will be asked to sign in with this email address.</p>
<p>Parley</p>
</body></html>
`))

// Subject is the transcript email's subject: it names the room, so people can tell
// their chats apart in their inbox.
func Subject(room string) string {
	return fmt.Sprintf("Your Parley chat in room %s — transcript", room)
}

// BuildEmail composes the transcript email for in.Recipient (the host or participant
// of in.Session): the other party, start and end time, the conversation itself (up to
// MailMaxMessages and MailMaxTextBytes) with every time in the recipient's zone, and
// the absolute link to the CSV. The HTML body is escaped by html/template; headers are
// left to the Mailer's library.
func BuildEmail(in MailInput) (chat.Email, error) {
	s := in.Session
	loc := in.Zone
	note := "Times are in your time zone (" + zoneName(loc) + ")."
	if loc == nil {
		loc = time.UTC
		note = "Times are in UTC: Parley does not know your time zone yet (it learns it when you sign in from a browser)."
	}
	v := mailView{
		Room:     s.Room,
		Peer:     s.Peer(in.Recipient),
		Started:  formatTime(s.InitiatedAt, loc),
		Ended:    formatTime(s.EndedAt, loc),
		EndedBy:  s.EndedBy,
		Messages: s.MessageCount,
		Link:     strings.TrimRight(in.PublicURL, "/") + Link(s.ID),
		ZoneNote: note,
	}
	v.Lines, v.Truncated = mailLines(in.Messages, loc)
	v.Truncated = v.Truncated || in.More
	v.Shown = len(v.Lines)
	var text, html bytes.Buffer
	if err := textMail.Execute(&text, v); err != nil {
		return chat.Email{}, chat.Wrap(chat.EInternal, err, "cannot render transcript email")
	}
	if err := htmlMail.Execute(&html, v); err != nil {
		return chat.Email{}, chat.Wrap(chat.EInternal, err, "cannot render transcript email")
	}
	return chat.Email{To: in.Recipient, Subject: Subject(s.Room), Text: text.String(), HTML: html.String()}, nil
}

// mailLines turns messages into lines, stopping at MailMaxMessages or once the text
// would pass MailMaxTextBytes; truncated tells that some were left out.
func mailLines(msgs []chat.Message, loc *time.Location) (lines []mailLine, truncated bool) {
	layout := "15:04"
	if len(msgs) > 0 {
		first, last := msgs[0].CreatedAt.In(loc), msgs[len(msgs)-1].CreatedAt.In(loc)
		if first.YearDay() != last.YearDay() || first.Year() != last.Year() {
			layout = "2 Jan 15:04"
		}
	}
	total := 0
	for i, m := range msgs {
		total += len(m.Text)
		if i >= MailMaxMessages || total > MailMaxTextBytes {
			return lines, true
		}
		lines = append(lines, mailLine{Time: m.CreatedAt.In(loc).Format(layout), From: m.From,
			Text: m.Text, Bye: m.Kind == chat.KindBye})
	}
	return lines, false
}

// Link is the transcript's path on Parley. It never expires: /transcripts/{id} checks
// who asks each time.
func Link(sessionID string) string { return "/transcripts/" + sessionID }

// formatTime writes t in loc, or "-" when unknown.
func formatTime(t time.Time, loc *time.Location) string {
	if t.IsZero() {
		return "-"
	}
	return t.In(loc).Format(emailTimeLayout)
}

// zoneName is how a zone is named to people: its IANA name.
func zoneName(loc *time.Location) string {
	if loc == nil {
		return "UTC"
	}
	return loc.String()
}
