package chat

import (
	"errors"
	"fmt"
)

// Error codes. The first group is part of the WebSocket contract (docs/protocol.md) and
// reaches clients in error frames; the rest classify failures inside Parley.
const (
	ERoomFull     = "room_full"     // a third person tried to enter a chat of two
	EChatEnded    = "chat_ended"    // the chat no longer accepts messages
	EInvalidFrame = "invalid_frame" // a frame that is not valid JSON or not a known type
	ETooLong      = "too_long"      // message text over the limit
	EEmpty        = "empty"         // message text empty or only white space
	ERateLimited  = "rate_limited"  // too many requests; slow down
	ENotAllowed   = "not_allowed"   // the person may not do this
	ENoChat       = "no_chat"       // connecting to a room where the person has no chat (a join starts one)

	EInvalid      = "invalid"      // bad input outside frames: room name, email, id
	ENotFound     = "not_found"    // no such session, object or message
	EConflict     = "conflict"     // a concurrent change won; re-read and retry
	EUnauthorized = "unauthorized" // no valid identity
	EUnavailable  = "unavailable"  // a backend cannot be reached now; retry later
	EPermanent    = "permanent"    // a job step that retrying cannot fix (e.g. mail address refused)
	EInternal     = "internal"     // a bug or unexpected failure; logged, never shown in detail
)

// Error is a domain error: a code that callers switch on and a message fit to show to
// the person concerned. Internal errors wrap their cause, which is logged, not shown.
type Error struct {
	Code    string
	Message string
	Err     error // optional cause
}

// Error implements error.
func (e *Error) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("%s: %s: %v", e.Code, e.Message, e.Err)
	}
	return fmt.Sprintf("%s: %s", e.Code, e.Message)
}

// Unwrap exposes the cause to errors.Is and errors.As.
func (e *Error) Unwrap() error { return e.Err }

// Errorf returns an *Error with the given code and a formatted message.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// Wrap returns an *Error with the given code and message caused by err.
func Wrap(code string, err error, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...), Err: err}
}

// ErrorCode returns the code of the first *Error in err's chain, EInternal for any
// other non-nil error and "" for nil.
func ErrorCode(err error) string {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return EInternal
}

// ErrorMessage returns the text fit to show a person: the message of the first *Error
// in err's chain, or a generic sentence for internal errors, whose detail stays in logs.
func ErrorMessage(err error) string {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) && e.Code != EInternal {
		return e.Message
	}
	return "Something went wrong on our side. Please try again."
}

// IsCode reports whether err carries the given code.
func IsCode(err error, code string) bool { return ErrorCode(err) == code }
