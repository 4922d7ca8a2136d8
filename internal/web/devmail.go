package web

import (
	"net/http"
	"regexp"

	"parley/internal/outbox"
)

// devMailLimit is how many emails /dev/mail lists, newest first.
const devMailLimit = 200

// devMailList is the data of templates/devmail_list.html.
type devMailList struct {
	layoutData
	Dir   string
	Mails []outbox.Summary
}

// devMailMessage is the data of templates/devmail_message.html, one email's page.
type devMailMessage struct {
	layoutData
	Mail *outbox.Email
	Body []textSpan
}

// textSpan is a run of an email's text, a link or not.
type textSpan struct {
	Text string
	Link string // the URL when Text is a link
}

// handleDevMail serves GET /dev/mail (development mode only): the outbox, newest first.
func (s *Server) handleDevMail() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mails, err := outbox.List(s.cfg.OutboxDir, devMailLimit)
		if err != nil {
			s.renderError(w, r, err)
			return
		}
		viewer, _ := s.currentEmail(r)
		s.render(w, r, http.StatusOK, "devmail_list", devMailList{layoutData{viewer}, s.cfg.OutboxDir, mails})
	})
}

// handleDevMailMessage serves GET /dev/mail/{name}: one email's headers and text body,
// escaped, with its http(s) links clickable.
func (s *Server) handleDevMailMessage() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mail, err := outbox.Read(s.cfg.OutboxDir, r.PathValue("name"))
		if err != nil {
			s.renderError(w, r, err)
			return
		}
		viewer, _ := s.currentEmail(r)
		s.render(w, r, http.StatusOK, "devmail_message", devMailMessage{layoutData{viewer}, mail, linkify(mail.Text)})
	})
}

// linkPattern finds http(s) URLs in plain text.
var linkPattern = regexp.MustCompile(`https?://[^\s<>"]+`)

// linkify splits text into plain runs and links; the template escapes both, and
// html/template refuses any URL scheme but http(s) and mailto in href.
func linkify(text string) []textSpan {
	var spans []textSpan
	last := 0
	for _, m := range linkPattern.FindAllStringIndex(text, -1) {
		if m[0] > last {
			spans = append(spans, textSpan{Text: text[last:m[0]]})
		}
		u := text[m[0]:m[1]]
		spans = append(spans, textSpan{Text: u, Link: u})
		last = m[1]
	}
	if last < len(text) {
		spans = append(spans, textSpan{Text: text[last:]})
	}
	return spans
}
