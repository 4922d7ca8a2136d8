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

// mailView is what the transcript email says to one recipient.
type mailView struct {
	Room     string
	Peer     string // the other party, or "" when no one joined
	Started  string
	Ended    string
	Messages int64
	Link     string
}

// emailTimeLayout is how times appear in emails: unambiguous, with the zone.
const emailTimeLayout = "2 Jan 2006 15:04 MST"

var textMail = texttemplate.Must(texttemplate.New("text").Parse(`Hello,

your Parley chat in room {{.Room}} has ended.

With:     {{if .Peer}}{{.Peer}}{{else}}(no one else joined){{end}}
Started:  {{.Started}}
Ended:    {{.Ended}}
Messages: {{.Messages}}

Download the transcript (CSV) here:
{{.Link}}

You will be asked to sign in with this email address.

-- 
Parley
`))

var htmlMail = htmltemplate.Must(htmltemplate.New("html").Parse(`<!DOCTYPE html>
<html><body style="font-family:sans-serif">
<p>Hello,</p>
<p>your Parley chat in room <strong>{{.Room}}</strong> has ended.</p>
<table>
<tr><td>With</td><td>{{if .Peer}}{{.Peer}}{{else}}(no one else joined){{end}}</td></tr>
<tr><td>Started</td><td>{{.Started}}</td></tr>
<tr><td>Ended</td><td>{{.Ended}}</td></tr>
<tr><td>Messages</td><td>{{.Messages}}</td></tr>
</table>
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

// BuildEmail composes the transcript email for recipient (the host or participant of
// s): the other party, start and end time, message count and the absolute link.
// The HTML body is escaped by html/template; headers are left to the Mailer's library.
func BuildEmail(s *chat.Session, recipient, publicURL string) (chat.Email, error) {
	v := mailView{
		Room:     s.Room,
		Peer:     s.Peer(recipient),
		Started:  formatTime(s.InitiatedAt),
		Ended:    formatTime(s.EndedAt),
		Messages: s.MessageCount,
		Link:     strings.TrimRight(publicURL, "/") + Link(s.ID),
	}
	var text, html bytes.Buffer
	if err := textMail.Execute(&text, v); err != nil {
		return chat.Email{}, chat.Wrap(chat.EInternal, err, "cannot render transcript email")
	}
	if err := htmlMail.Execute(&html, v); err != nil {
		return chat.Email{}, chat.Wrap(chat.EInternal, err, "cannot render transcript email")
	}
	return chat.Email{To: recipient, Subject: Subject(s.Room), Text: text.String(), HTML: html.String()}, nil
}

// Link is the transcript's path on Parley (the seed's chatHistory). It never expires:
// /transcripts/{id} checks who asks each time.
func Link(sessionID string) string { return "/transcripts/" + sessionID }

// formatTime writes t in UTC, or "-" when unknown.
func formatTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(emailTimeLayout)
}
