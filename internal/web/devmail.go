package web

import (
	"encoding/json"
	"net/http"
	"regexp"
	"strings"
	"time"

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

// devMailJSON is the body of GET /dev/mail.json: the outbox for programs (parley bench
// signs in through it). Fields may be added; none is renamed or removed without
// changing the path.
type devMailJSON struct {
	Mails []devMailJSONEmail `json:"mails"` // newest first, never null
}

// devMailJSONEmail is one email of devMailJSON.
type devMailJSONEmail struct {
	Name    string    `json:"name"` // its page is /dev/mail/{name}
	Time    time.Time `json:"time"`
	From    string    `json:"from"`
	To      string    `json:"to"`
	Subject string    `json:"subject"`
	Text    string    `json:"text"`  // the plain-text body
	Links   []string  `json:"links"` // the http(s) URLs in Text, in order, never null
}

// handleDevMailJSON serves GET /dev/mail.json[?to=address] (development mode only):
// the emails of /dev/mail with their text and links, only those to address when given.
func (s *Server) handleDevMailJSON() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mails, err := outbox.ListEmails(s.cfg.OutboxDir, devMailLimit)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		to := r.URL.Query().Get("to")
		out := devMailJSON{Mails: []devMailJSONEmail{}}
		for _, m := range mails {
			if to != "" && !strings.EqualFold(m.To, to) {
				continue
			}
			links := []string{}
			for _, span := range linkify(m.Text) {
				if span.Link != "" {
					links = append(links, span.Link)
				}
			}
			out.Mails = append(out.Mails, devMailJSONEmail{m.Name, m.Time, m.From, m.To, m.Subject, m.Text, links})
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		_ = json.NewEncoder(w).Encode(out)
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
