package web

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"path"
	"strings"
	"time"

	"parley/internal/chat"
	"parley/internal/metrics"
)

// The pages and their assets are compiled into the binary, so a single file is the
// whole site and no deployment can serve templates that do not match the code.
//
//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// site is the parsed pages and the fingerprints of the static files. It is built once
// at package start and never changes, so requests share it without locking.
var site = mustLoadSite()

// siteAssets holds what pages need at run time.
type siteAssets struct {
	pages   map[string]*template.Template
	static  fs.FS             // the static/ folder
	version map[string]string // static file name → short content hash, for cache busting
}

// mustLoadSite parses every page and fingerprints every static file; a broken
// template stops the program at start rather than at the first request. Every file
// in templates/ but layout.html is a page, named by its file name without ".html",
// and rendered inside the layout.
func mustLoadSite() *siteAssets {
	sub, err := fs.Sub(staticFS, "static")
	if err != nil {
		panic(err)
	}
	a := &siteAssets{static: sub, version: make(map[string]string), pages: make(map[string]*template.Template)}
	if err := a.fingerprint(); err != nil {
		panic(err)
	}
	funcs := template.FuncMap{"static": a.staticURL}
	layout := template.Must(template.New("layout.html").Funcs(funcs).ParseFS(templateFS, "templates/layout.html"))
	files, err := fs.Glob(templateFS, "templates/*.html")
	if err != nil {
		panic(err)
	}
	for _, file := range files {
		name := strings.TrimSuffix(path.Base(file), ".html")
		if name == "layout" {
			continue
		}
		a.pages[name] = template.Must(template.Must(layout.Clone()).ParseFS(templateFS, file))
	}
	return a
}

// fingerprint records a short SHA-256 of each static file.
func (a *siteAssets) fingerprint() error {
	return fs.WalkDir(a.static, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(a.static, p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(b)
		a.version[p] = hex.EncodeToString(sum[:6])
		return nil
	})
}

// staticURL is the template function {{static "style.css"}}: the file's URL with its
// content hash, so browsers may cache it for a year and still see every change.
func (a *siteAssets) staticURL(name string) (string, error) {
	v, ok := a.version[name]
	if !ok {
		return "", fmt.Errorf("no static file %q", name)
	}
	return "/static/" + name + "?v=" + v, nil
}

// layoutData is what the layout needs on every page.
type layoutData struct {
	Viewer string // the signed-in email, "" when nobody is signed in
}

// render is the one way a page is shown: it executes page (a file in templates/ without
// ".html") into a buffer first, so a template failure becomes a clean 500 instead of
// half a page, then writes it with status.
func (s *Server) render(w http.ResponseWriter, r *http.Request, status int, page string, data any) {
	t, ok := site.pages[page]
	if !ok {
		s.writeError(w, r, chat.Errorf(chat.EInternal, "no page %q", page))
		return
	}
	var buf bytes.Buffer
	if err := t.ExecuteTemplate(&buf, "layout", data); err != nil {
		s.writeError(w, r, chat.Wrap(chat.EInternal, err, "rendering page %s", page))
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store") // pages show who is signed in
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

// errorPage is the data of templates/error.html.
type errorPage struct {
	layoutData
	Title   string
	Message string
}

// renderError shows err as an HTML page with the status its code maps to. Like
// writeError, it logs only failures on our side and never shows their detail.
func (s *Server) renderError(w http.ResponseWriter, r *http.Request, err error) {
	s.logError(r, err)
	status := httpStatus(chat.ErrorCode(err))
	viewer, _ := s.currentEmail(r)
	s.render(w, r, status, "error", errorPage{
		layoutData: layoutData{Viewer: viewer},
		Title:      errorTitle(chat.ErrorCode(err)),
		Message:    chat.ErrorMessage(err),
	})
}

// errorTitle is an error page's heading: what happened, in plain words, rather than
// the HTTP status name.
func errorTitle(code string) string {
	switch code {
	case chat.EInvalid, chat.EInvalidFrame, chat.ETooLong, chat.EEmpty:
		return "That did not work"
	case chat.EUnauthorized:
		return "Please sign in first"
	case chat.ENotAllowed:
		return "That is not yours to see"
	case chat.ENotFound:
		return "We could not find that"
	case chat.ERoomFull:
		return "This room is taken"
	case chat.EChatEnded:
		return "This chat has ended"
	case chat.EConflict:
		return "Something changed meanwhile"
	case chat.ERateLimited:
		return "Please wait a little"
	case chat.EUnavailable:
		return "Parley cannot do that right now"
	}
	return "Something went wrong on our side"
}

// handleStatic serves the embedded static files. A request carrying the file's
// current fingerprint (?v=…) may be cached for good; any other is revalidated by ETag.
func (s *Server) handleStatic() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name := strings.TrimPrefix(path.Clean(r.URL.Path), "/static/")
		version, ok := site.version[name]
		if !ok {
			s.renderError(w, r, chat.Errorf(chat.ENotFound, "There is no such file."))
			return
		}
		b, err := fs.ReadFile(site.static, name)
		if err != nil {
			s.renderError(w, r, chat.Wrap(chat.EInternal, err, "reading static file"))
			return
		}
		h := w.Header()
		h.Set("ETag", `"`+version+`"`)
		if r.URL.Query().Get("v") == version {
			h.Set("Cache-Control", "public, max-age=31536000, immutable")
		} else {
			h.Set("Cache-Control", "public, no-cache")
		}
		// ServeContent sets Content-Type from the extension and answers If-None-Match.
		http.ServeContent(w, r, name, time.Time{}, bytes.NewReader(b))
	})
}

// formGuard refuses state-changing form posts that a browser sends from another site
// (cross-site request forgery), using the browser's Sec-Fetch-Site and Origin headers.
func (s *Server) formGuard(next http.Handler) http.Handler {
	p := http.NewCrossOriginProtection()
	// Browsers too old for Sec-Fetch-Site are checked by Origin against Host, which a
	// reverse proxy may rewrite: the public URL is this site whatever Host says.
	if err := p.AddTrustedOrigin(s.cfg.PublicURL); err != nil {
		s.log.Warn("public URL is not a valid origin", "err", err)
	}
	p.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.metrics.Refused(metrics.ReasonCrossSite)
		s.renderError(w, r, chat.Errorf(chat.ENotAllowed, "This form must be sent from Parley's own pages."))
	}))
	return p.Handler(next)
}
