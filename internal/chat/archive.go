package chat

import (
	"context"
	"io"
	"time"
)

// ArchiveObject describes a stored transcript: where it is and what it must be, so a
// later check can confirm it is still there, whole.
type ArchiveObject struct {
	Key    string // made from the session id only: "transcripts/{session}.csv"
	Size   int64
	SHA256 string // lower-case hex
}

// ArchiveKey returns the archive key of a session's transcript. It is derived from the
// session id alone, never from a room name or an email.
func ArchiveKey(sessionID string) string { return "transcripts/" + sessionID + ".csv" }

// Archive keeps transcripts (local folder or S3). Objects are private: people reach
// them only through Parley's /transcripts/{session}, which checks who asks.
type Archive interface {
	// Put stores body under key, replacing any earlier object, and returns the object
	// as read back from the archive (size and SHA-256 confirmed).
	Put(ctx context.Context, key string, body []byte) (ArchiveObject, error)

	// Stat returns the stored object's size and SHA-256, or ENotFound.
	Stat(ctx context.Context, key string) (ArchiveObject, error)

	// Open returns the object's content, or ENotFound.
	Open(ctx context.Context, key string) (io.ReadCloser, error)

	// URL returns a link the person's browser can download the object from, valid for
	// ttl, or "" when the archive has no such links and Parley serves Open itself.
	URL(ctx context.Context, key, filename string, ttl time.Duration) (string, error)
}

// Email is one message to one recipient. Headers are built by a mail library from these
// fields, never by joining strings, so no field can inject a header.
type Email struct {
	To      string
	Subject string
	Text    string // plain-text body
	HTML    string // HTML body (already escaped)
}

// Mailer sends email. Send returns nil once the mail server (or outbox) accepted the
// message; an error with code EPermanent when retrying cannot help (the address was
// refused); any other error is temporary and the caller retries with backoff.
type Mailer interface {
	Send(ctx context.Context, e Email) error
}
