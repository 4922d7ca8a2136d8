package web

import (
	"context"
	"net/http"
	"time"

	"parley/internal/chat"
)

// tzField is the hidden form field in which the sign-in forms send the browser's time
// zone (static/tz.js fills it from Intl.DateTimeFormat().resolvedOptions().timeZone).
const tzField = "tz"

// rememberZone stores the time zone the browser sent with a sign-in form for email,
// once email is proven (or believed, with trust sign-in). A missing or unknown zone
// changes nothing; failing to store it costs only local times, so it is just logged.
func (s *Server) rememberZone(r *http.Request, email string) {
	if s.people == nil {
		return
	}
	name := r.PostFormValue(tzField)
	if _, err := chat.ParseTimeZone(name); err != nil {
		return
	}
	if err := s.people.SetTimeZone(r.Context(), email, name); err != nil {
		s.log.Warn("cannot store a time zone", "code", chat.ErrorCode(err), "err", err)
	}
}

// readerZone is the zone times are shown in to email: theirs when known, else UTC.
type readerZone struct {
	Loc   *time.Location
	Known bool // false: UTC because Parley does not know the reader's zone (pages say so)
}

// Name is the zone's IANA name.
func (z readerZone) Name() string { return z.Loc.String() }

// zoneOf returns email's zone.
func (s *Server) zoneOf(ctx context.Context, email string) readerZone {
	loc, known := chat.ZoneOf(ctx, s.people, email)
	return readerZone{Loc: loc, Known: known}
}
