package web

import (
	"context"
	"net/http"
	"strings"
	"time"

	"parley/internal/chat"
	"parley/internal/transcript"
)

// historyLimit is how many chats the history page lists, newest first.
const historyLimit = 100

// historyPage is the data of templates/history.html.
type historyPage struct {
	layoutData
	Query   string // what was typed in the search box
	Subject string // whose chats are listed (normalized), "" when none
	Error   string
	Chats   []historyRow
	Zone    readerZone // the viewer's: every time is shown in it
}

// historyRow is one chat as its subject sees it.
type historyRow struct {
	Room        string
	RoomLink    string // set while the chat is in progress and the viewer is in it
	Peer        string
	Role        chat.Role
	Status      string
	StatusClass string // inprogress, ending, completed, failed: picks the colour
	Note        string
	Started     time.Time
	Ended       time.Time
	Messages    int64 // -1 when not known
	Transcript  string
}

// handleHistory serves GET /history?email=…: the chats an email took part in. With no
// email, a signed-in person sees their own.
func (s *Server) handleHistory() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		viewer, _ := s.currentEmail(r)
		if viewer == "" && s.emailLink() {
			s.signInFirst(w, r) // only a signed-in person may see chats
			return
		}
		page := historyPage{layoutData: layoutData{Viewer: viewer}, Zone: s.zoneOf(r.Context(), viewer)}
		page.Query = strings.TrimSpace(r.URL.Query().Get("email"))
		if page.Query == "" {
			page.Query = viewer
		}
		if page.Query == "" {
			s.render(w, r, http.StatusOK, "history", page)
			return
		}
		subject, err := chat.NormalizeEmail(page.Query)
		if err == nil {
			err = s.mayViewHistory(viewer, subject)
		}
		if err != nil {
			page.Error = chat.ErrorMessage(err)
			s.render(w, r, httpStatus(chat.ErrorCode(err)), "history", page)
			return
		}
		sessions, err := s.sessions.SessionsByEmail(r.Context(), subject, historyLimit)
		if err != nil {
			s.renderError(w, r, err)
			return
		}
		page.Subject = subject
		page.Chats = s.historyRows(r.Context(), viewer, subject, sessions, page.Zone.Loc)
		s.render(w, r, http.StatusOK, "history", page)
	})
}

// mayViewHistory decides whose chats viewer may list. With sign-in by emailed link, a
// person sees their own and admins anyone's. With trust sign-in, anyone
// may search any email: the typed-in email is not proven, so restricting would
// protect nothing.
func (s *Server) mayViewHistory(viewer, subject string) error {
	switch {
	case !s.emailLink() || viewer == subject || s.isAdmin(viewer):
		return nil
	case viewer == "":
		return chat.Errorf(chat.EUnauthorized, "Please sign in (join a room) to see your chats.")
	}
	return chat.Errorf(chat.ENotAllowed, "You can see only your own chats.")
}

// historyRows describes each session as subject took part in it.
// Times are given in loc, the viewer's zone.
func (s *Server) historyRows(ctx context.Context, viewer, subject string, sessions []*chat.Session, loc *time.Location) []historyRow {
	rows := make([]historyRow, 0, len(sessions))
	for _, sess := range sessions {
		row := historyRow{
			Room: sess.Room, Peer: sess.Peer(subject), Role: sess.RoleOf(subject),
			Started: sess.InitiatedAt.In(loc), Ended: sess.EndedAt,
			Messages: s.messageCount(ctx, sess),
		}
		if !row.Ended.IsZero() {
			row.Ended = row.Ended.In(loc)
		}
		describeStatus(&row, sess, subject)
		if sess.Status == chat.StatusInProgress && viewer == subject {
			row.RoomLink = roomPath(sess.Room)
		}
		rows = append(rows, row)
	}
	return rows
}

// describeStatus fills the status words, colour, note and transcript link of a row.
func describeStatus(row *historyRow, sess *chat.Session, subject string) {
	switch {
	case sess.Status == chat.StatusInProgress:
		row.Status, row.StatusClass = "In progress", "inprogress"
		if sess.ParticipantEmail == "" {
			row.Note = "Waiting for the other person."
		}
		return
	case sess.ParticipantEmail == "":
		row.Status, row.StatusClass = "Ended before anyone joined", "completed"
		if sess.Status == chat.StatusCompleted && !transcript.NothingToMail(sess) {
			row.Transcript = transcript.Link(sess.ID)
		}
		return
	case sess.Status == chat.StatusEnding:
		row.Status, row.StatusClass = "Ending", "ending"
		row.Note = "The transcript is on its way."
	default:
		row.Status, row.StatusClass = "Completed", "completed"
		row.Transcript = transcript.Link(sess.ID)
		if failure := mailFailure(sess, subject); failure != "" {
			row.Status, row.StatusClass = "Mail failed", "failed"
			row.Note = "The transcript could not be emailed (" + failure + "); download it here."
		}
	}
	if sess.EndedBy != "" {
		row.Note = strings.TrimSpace("Ended by " + sess.EndedBy + ". " + row.Note)
	}
}

// mailFailure returns the recorded permanent mail failure for subject's copy.
func mailFailure(sess *chat.Session, subject string) string {
	switch sess.RoleOf(subject) {
	case chat.RoleHost:
		return sess.HostMailError
	case chat.RoleParticipant:
		return sess.ParticipantMailError
	}
	return ""
}

// messageCount is the transcript's count once archived; before that the session's
// last seq (seqs have no gaps, so it is the count); -1 when unknown or purged.
func (s *Server) messageCount(ctx context.Context, sess *chat.Session) int64 {
	if sess.Archive.Key != "" {
		return sess.MessageCount
	}
	if !sess.PurgedAt.IsZero() || s.messages == nil {
		return -1
	}
	n, err := s.messages.LastSeq(ctx, sess.ID)
	if err != nil {
		return -1
	}
	return n
}
