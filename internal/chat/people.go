package chat

import (
	"context"
	"time"
)

// MaxTimeZoneLen bounds a stored time zone name (IANA names are far shorter).
const MaxTimeZoneLen = 64

// PeopleStore keeps what Parley knows of a person beyond their email: the time zone
// their browser reported when they last signed in, so pages and emails show times as
// the reader's clock does.
type PeopleStore interface {
	// SetTimeZone records email's IANA time zone name (already checked by
	// ParseTimeZone). Repeating it is harmless; the latest call wins.
	SetTimeZone(ctx context.Context, email, zone string) error

	// TimeZone returns email's recorded zone name, or "" when none is known.
	TimeZone(ctx context.Context, email string) (string, error)
}

// ParseTimeZone checks a zone name a browser sent (Intl's resolvedOptions().timeZone)
// and returns its location. Only names of the IANA database are accepted: "" and
// "Local" (the server's own zone, meaningless to a reader) are refused.
func ParseTimeZone(name string) (*time.Location, error) {
	if name == "" || name == "Local" || len(name) > MaxTimeZoneLen {
		return nil, Errorf(EInvalid, "That is not a time zone.")
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '/' || c == '_' || c == '-' || c == '+') {
			return nil, Errorf(EInvalid, "That is not a time zone.")
		}
	}
	loc, err := time.LoadLocation(name)
	if err != nil {
		return nil, Errorf(EInvalid, "That is not a time zone.")
	}
	return loc, nil
}

// ZoneOf returns email's time zone from people, or UTC with known false when there is
// no store, no recorded zone, or the store cannot be read (times are then shown in UTC,
// and pages say so).
func ZoneOf(ctx context.Context, people PeopleStore, email string) (loc *time.Location, known bool) {
	if people == nil || email == "" {
		return time.UTC, false
	}
	name, err := people.TimeZone(ctx, email)
	if err != nil || name == "" {
		return time.UTC, false
	}
	loc, err = ParseTimeZone(name)
	if err != nil {
		return time.UTC, false
	}
	return loc, true
}
