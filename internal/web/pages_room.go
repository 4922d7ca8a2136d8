package web

import (
	"context"
	"net/http"
	"time"

	"parley/internal/chat"
	"parley/internal/transcript"
)

// roomPage is the data of templates/room.html. Everything room.js needs is put in
// data- attributes: the CSP forbids inline script.
type roomPage struct {
	layoutData
	Room    string
	MaxText int
	ByeText string
}

// closedRoomPage is the data of templates/room_closed.html: a room with no chat in
// progress for the viewer, showing their latest chat there read-only (when they had
// one) with "Start a new chat in this room" and "History".
type closedRoomPage struct {
	layoutData
	Room         string
	Session      *chat.Session // nil: the viewer never chatted here
	Peer         string
	Started      time.Time
	Ended        time.Time
	EndedNote    string // who ended it, in words
	Lines        []closedLine
	More         bool   // the chat has more messages than are shown
	Purged       bool   // its messages now live only in the transcript
	Transcript   string // the CSV's link once it is ready
	Zone         readerZone
	NobodyJoined bool
}

// closedLine is one message of an ended chat.
type closedLine struct {
	Seq  int64
	From string
	Mine bool
	Text []textSpan // http(s) links become links; everything is escaped
	Bye  bool
	At   time.Time // in the reader's zone
}

// closedRoomMessages is the most messages the read-only page shows; the rest are in
// the transcript.
const closedRoomMessages = 1000

// handleRoom serves GET /rooms/{room}. Nobody signed in goes to the sign-in page and
// comes back here. While the room has a chat in progress, the chat page (room.js
// enters it on the WebSocket, or is told the room is full). Otherwise the viewer's
// latest chat in the room is shown read-only, or an empty room: merely visiting
// never starts a chat; "Start a new chat" (POST /join) does.
func (s *Server) handleRoom() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		room, err := chat.NormalizeRoom(r.PathValue("room"))
		if err != nil {
			s.renderError(w, r, err)
			return
		}
		if room != r.PathValue("room") { // /rooms/DEMO2 is /rooms/demo2
			http.Redirect(w, r, roomPath(room), http.StatusMovedPermanently)
			return
		}
		email, ok := s.currentEmail(r)
		if !ok {
			s.signInFirst(w, r)
			return
		}
		_, err = s.sessions.InProgress(r.Context(), room)
		if err == nil {
			s.render(w, r, http.StatusOK, "room", roomPage{
				layoutData: layoutData{Viewer: email},
				Room:       room, MaxText: s.cfg.MaxText, ByeText: chat.ByeText,
			})
			return
		}
		if !chat.IsCode(err, chat.ENotFound) {
			s.renderError(w, r, err)
			return
		}
		page, err := s.closedRoom(r.Context(), room, email)
		if err != nil {
			s.renderError(w, r, err)
			return
		}
		s.render(w, r, http.StatusOK, "room_closed", page)
	})
}

// closedRoom describes a room without a chat in progress to email.
func (s *Server) closedRoom(ctx context.Context, room, email string) (closedRoomPage, error) {
	zone := s.zoneOf(ctx, email)
	p := closedRoomPage{layoutData: layoutData{Viewer: email}, Room: room, Zone: zone}
	sess, err := s.sessions.LatestSession(ctx, room, email)
	if chat.IsCode(err, chat.ENotFound) {
		return p, nil
	}
	if err != nil {
		return p, err
	}
	p.Session, p.Peer = sess, sess.Peer(email)
	p.NobodyJoined = sess.ParticipantEmail == ""
	p.Started = sess.InitiatedAt.In(zone.Loc)
	if !sess.EndedAt.IsZero() {
		p.Ended = sess.EndedAt.In(zone.Loc)
	}
	switch {
	case p.NobodyJoined:
		p.EndedNote = "Ended before anyone joined."
	case sess.EndedBy == email:
		p.EndedNote = "You ended this chat."
	case sess.EndedBy != "":
		p.EndedNote = sess.EndedBy + " ended this chat."
	default:
		p.EndedNote = "This chat has ended."
	}
	if sess.Status == chat.StatusCompleted && sess.Archive.Key != "" && !transcript.NothingToMail(sess) {
		p.Transcript = transcript.Link(sess.ID)
	}
	if !sess.PurgedAt.IsZero() {
		p.Purged = true
		return p, nil
	}
	msgs, err := s.messages.Messages(ctx, sess.ID, 0, closedRoomMessages+1)
	if err != nil {
		return p, err
	}
	if len(msgs) > closedRoomMessages {
		msgs, p.More = msgs[:closedRoomMessages], true
	}
	p.Lines = make([]closedLine, len(msgs))
	for i, m := range msgs {
		p.Lines[i] = closedLine{Seq: m.Seq, From: m.From, Mine: m.From == email, Text: linkify(m.Text),
			Bye: m.Kind == chat.KindBye, At: m.CreatedAt.In(zone.Loc)}
	}
	return p, nil
}
