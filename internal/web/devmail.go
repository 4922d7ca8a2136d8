package web

import (
	"html/template"
	"net/http"
	"regexp"
	"strings"

	"parley/internal/chat"
	"parley/internal/outbox"
)

// devMailLimit is how many emails /dev/mail lists, newest first.
const devMailLimit = 200

// devMailPages are the two mail viewer pages inside the site's layout. They are parsed
// here rather than in pages.go because they exist only in development mode.
var devMailPages = mustDevMailPages()

const devMailListHTML = `{{define "title"}}Outbox — Parley{{end}}
{{define "content"}}
<main>
  <section class="card">
    <h1>Outbox</h1>
    <p>Development mode: emails Parley would have sent are kept in <code>{{.Dir}}</code>.</p>
    {{if .Mails}}
    <table class="mail-list">
      <thead><tr><th>Time (UTC)</th><th>To</th><th>Subject</th></tr></thead>
      <tbody>
      {{range .Mails}}
      <tr><td>{{.Time.Format "2006-01-02 15:04:05"}}</td><td>{{.To}}</td><td><a href="/dev/mail/{{.Name}}">{{.Subject}}</a></td></tr>
      {{end}}
      </tbody>
    </table>
    {{else}}
    <p>No email yet. End a chat and the transcript emails appear here.</p>
    {{end}}
  </section>
</main>
{{end}}`

const devMailMessageHTML = `{{define "title"}}{{.Mail.Subject}} — Outbox — Parley{{end}}
{{define "content"}}
<main>
  <section class="card">
    <p><a href="/dev/mail">&larr; Outbox</a></p>
    <h1>{{.Mail.Subject}}</h1>
    <dl class="mail-headers">
      <dt>From</dt><dd>{{.Mail.From}}</dd>
      <dt>To</dt><dd>{{.Mail.To}}</dd>
      <dt>Date</dt><dd>{{.Mail.Time.Format "2006-01-02 15:04:05 MST"}}</dd>
    </dl>
    <pre class="mail-body">{{range .Body}}{{if .Link}}<a href="{{.Link}}">{{.Text}}</a>{{else}}{{.Text}}{{end}}{{end}}</pre>
  </section>
</main>
{{end}}`

// mustDevMailPages parses the viewer's pages on top of the site's layout.
func mustDevMailPages() map[string]*template.Template {
	layout := template.Must(template.New("layout.html").Funcs(template.FuncMap{"static": site.staticURL}).
		ParseFS(templateFS, "templates/layout.html"))
	pages := make(map[string]*template.Template)
	for name, text := range map[string]string{"list": devMailListHTML, "message": devMailMessageHTML} {
		pages[name] = template.Must(template.Must(layout.Clone()).Parse(text))
	}
	return pages
}

// devMailList is the data of the outbox list.
type devMailList struct {
	layoutData
	Dir   string
	Mails []outbox.Summary
}

// devMailMessage is the data of one email's page.
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
		s.renderDevMail(w, r, "list", devMailList{layoutData{viewer}, s.cfg.OutboxDir, mails})
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
		s.renderDevMail(w, r, "message", devMailMessage{layoutData{viewer}, mail, linkify(mail.Text)})
	})
}

// renderDevMail executes one of the viewer's pages.
func (s *Server) renderDevMail(w http.ResponseWriter, r *http.Request, page string, data any) {
	var buf strings.Builder
	if err := devMailPages[page].ExecuteTemplate(&buf, "layout", data); err != nil {
		s.renderError(w, r, chat.Wrap(chat.EInternal, err, "rendering mail page"))
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write([]byte(buf.String()))
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
