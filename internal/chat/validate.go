package chat

import (
	"net/mail"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Limits of what Parley accepts. The text limit is configurable; these are defaults
// and hard bounds of the contract.
const (
	MaxRoomLen     = 64
	MaxEmailLen    = 254 // RFC 5321 path limit
	MaxClientIDLen = 64
	DefaultMaxText = 4000 // characters (runes)
)

// ValidateRoom checks a room name: 1–64 of A–Z, a–z, 0–9, '_' and '-'. Room names reach
// URLs, logs and pages, so nothing else is let through.
func ValidateRoom(room string) error {
	if room == "" {
		return Errorf(EInvalid, "Please enter a room name.")
	}
	if len(room) > MaxRoomLen {
		return Errorf(EInvalid, "A room name has at most %d characters.", MaxRoomLen)
	}
	for i := 0; i < len(room); i++ {
		c := room[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return Errorf(EInvalid, "A room name may contain only letters, digits, '-' and '_'.")
		}
	}
	return nil
}

// NormalizeRoom checks a room name and returns it in the one form Parley stores and
// compares: trimmed and lower-cased, so "DEMO2" and "demo2" are one room.
func NormalizeRoom(room string) (string, error) {
	room = strings.ToLower(strings.TrimSpace(room))
	if err := ValidateRoom(room); err != nil {
		return "", err
	}
	return room, nil
}

// NormalizeEmail parses a bare email address with net/mail and returns it in the one
// form Parley stores and compares: trimmed and lower-cased. Display names, comments,
// control characters (CR/LF above all) and over-long addresses are refused.
func NormalizeEmail(s string) (string, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return "", Errorf(EInvalid, "Please enter your email address.")
	}
	if len(s) > MaxEmailLen {
		return "", Errorf(EInvalid, "An email address has at most %d characters.", MaxEmailLen)
	}
	for _, r := range s {
		if r < 0x21 || r == 0x7f || !unicode.IsPrint(r) {
			return "", Errorf(EInvalid, "An email address cannot contain spaces or control characters.")
		}
	}
	addr, err := mail.ParseAddress(s)
	if err != nil || addr.Name != "" || addr.Address != s {
		return "", Errorf(EInvalid, "%q is not an email address.", s)
	}
	at := strings.LastIndexByte(s, '@')
	if at < 1 || !strings.Contains(s[at+1:], ".") && s[at+1:] != "localhost" {
		return "", Errorf(EInvalid, "%q is not an email address.", s)
	}
	return strings.ToLower(s), nil
}

// ValidateText checks a chat message's text: valid UTF-8, not empty or only white
// space, and at most max characters.
func ValidateText(text string, max int) error {
	if !utf8.ValidString(text) {
		return Errorf(EInvalidFrame, "Message text must be valid UTF-8.")
	}
	if strings.TrimSpace(text) == "" {
		return Errorf(EEmpty, "A message cannot be empty.")
	}
	if len(text) > max && utf8.RuneCountInString(text) > max {
		return Errorf(ETooLong, "A message has at most %d characters.", max)
	}
	return nil
}

// ValidateClientID checks the id a client gives a message: 1–64 printable ASCII
// characters. It makes a resend harmless, so it is required.
func ValidateClientID(id string) error {
	if id == "" || len(id) > MaxClientIDLen {
		return Errorf(EInvalidFrame, "A message needs an id of 1 to %d characters.", MaxClientIDLen)
	}
	for i := 0; i < len(id); i++ {
		if id[i] < 0x21 || id[i] > 0x7e {
			return Errorf(EInvalidFrame, "A message id may contain only printable ASCII characters.")
		}
	}
	return nil
}
