package web

import (
	"io"
	"mime"
	"net/http"
	"time"

	"parley/internal/chat"
	"parley/internal/transcript"
)

// transcriptLinkTTL is how long an archive download link (S3) stays valid. The link
// in the email is Parley's own /transcripts/{session}, which never expires; this one
// is minted per request after the access check, so it only needs to outlive the
// redirect.
const transcriptLinkTTL = 5 * time.Minute

// handleTranscript serves GET /transcripts/{session}: the archived CSV, to the host,
// the participant or an admin. Everyone else gets the same 404 as for a session that
// does not exist, so the page does not tell strangers which sessions exist.
func (s *Server) handleTranscript() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		viewer, ok := s.currentEmail(r)
		if !ok || viewer == "" {
			s.signInFirst(w, r)
			return
		}
		sess, err := s.transcriptFor(r, viewer, r.PathValue("session"))
		if err != nil {
			s.renderError(w, r, err)
			return
		}
		s.serveTranscript(w, r, sess)
	})
}

// errNoTranscript is the answer for a missing session and for one the viewer may not see.
var errNoTranscript = chat.Errorf(chat.ENotFound, "There is no such transcript.")

// transcriptFor returns the session whose transcript viewer asks for, once it is known
// to exist, to be viewer's to see and to be archived.
func (s *Server) transcriptFor(r *http.Request, viewer, id string) (*chat.Session, error) {
	if s.archive == nil {
		return nil, chat.Errorf(chat.EUnavailable, "Transcripts are not served here right now.")
	}
	if !validSessionID(id) {
		return nil, errNoTranscript
	}
	sess, err := s.sessions.Session(r.Context(), id)
	if chat.IsCode(err, chat.ENotFound) {
		return nil, errNoTranscript
	}
	if err != nil {
		return nil, err
	}
	if sess.RoleOf(viewer) == chat.RoleNone && !s.isAdmin(viewer) {
		return nil, errNoTranscript
	}
	if sess.Status != chat.StatusCompleted || sess.Archive.Key == "" {
		return nil, chat.Errorf(chat.ENotFound, "The transcript is not ready yet. It is emailed to both of you as soon as it is; please try again in a minute.")
	}
	return sess, nil
}

// serveTranscript redirects to the archive's own short-lived link when it has one
// (S3), or streams the object from the archive (local folder).
func (s *Server) serveTranscript(w http.ResponseWriter, r *http.Request, sess *chat.Session) {
	name := transcript.FileName(sess)
	url, err := s.archive.URL(r.Context(), sess.Archive.Key, name, transcriptLinkTTL)
	if err != nil {
		s.renderError(w, r, err)
		return
	}
	h := w.Header()
	h.Set("Cache-Control", "private, no-store")
	if url != "" {
		http.Redirect(w, r, url, http.StatusSeeOther)
		return
	}
	body, err := s.archive.Open(r.Context(), sess.Archive.Key)
	if err != nil {
		if chat.IsCode(err, chat.ENotFound) {
			s.log.Error("archived transcript missing", "session", sess.ID)
		}
		s.renderError(w, r, err)
		return
	}
	defer body.Close()
	h.Set("Content-Type", "text/csv; charset=utf-8")
	h.Set("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": name}))
	if rs, ok := body.(io.ReadSeeker); ok {
		// A file: ServeContent sends its real length and answers range requests, so
		// an interrupted download can resume.
		http.ServeContent(w, r, name, time.Time{}, rs)
		return
	}
	if _, err := io.Copy(w, body); err != nil {
		s.log.Warn("transcript download cut short", "session", sess.ID, "err", err)
	}
}

// validSessionID reports whether id looks like a session id (chat.NewSessionID: hex),
// so nothing else reaches the store.
func validSessionID(id string) bool {
	if id == "" || len(id) > 64 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}
