package chat

import (
	"context"
	"time"
)

// SessionStore keeps chat sessions (the original design's Chat_table). Every state change that two
// requests could race for (claiming the participant seat, ending, completing) is one
// conditional update, so exactly one of them wins on every backend, across replicas.
// Methods return *Error values with the codes named in their docs; any other failure is
// an internal or EUnavailable error.
type SessionStore interface {
	// Enter brings email into the room's chat in progress and returns the session and
	// the role email has in it:
	//   - no chat in progress in the room: a new session starts with email as host;
	//   - email is already host or participant: that session and role (several tabs and
	//     reconnects are fine);
	//   - the participant seat is free: email claims it;
	//   - otherwise ERoomFull.
	// A room has at most one session in progress at a time, even when many replicas
	// call Enter at once. The caller has validated room and email.
	Enter(ctx context.Context, room, email string, now time.Time) (*Session, Role, error)

	// Session returns the session with the given id, or ENotFound.
	Session(ctx context.Context, id string) (*Session, error)

	// InProgress returns the room's chat in progress, or ENotFound when the room has
	// none. It starts nothing: it is how a visit (as opposed to a join) finds a chat.
	InProgress(ctx context.Context, room string) (*Session, error)

	// LatestSession returns the newest session of the room in which email is host or
	// participant, whatever its status, or ENotFound. A person revisiting a room whose
	// chat has ended is shown that ended chat instead of silently starting a new one.
	LatestSession(ctx context.Context, room, email string) (*Session, error)

	// SessionsByEmail lists the sessions in which email is host or participant, newest
	// first, at most limit of them.
	SessionsByEmail(ctx context.Context, email string, limit int) ([]*Session, error)

	// End moves an in-progress session to StatusEnding, recording who ended it and when.
	// Of several concurrent calls exactly one returns true; the others, and calls on a
	// session already ending or completed, return false and no error. ENotFound if
	// there is no such session.
	End(ctx context.Context, id, by string, at time.Time) (bool, error)

	// SessionsEnding lists sessions in StatusEnding, oldest end first: export work that
	// is not finished. The queue is not trusted to remember it; this list is.
	SessionsEnding(ctx context.Context, limit int) ([]*Session, error)

	// RecordArchive stores the confirmed archive object and the transcript's message
	// count on the session. Repeating it with the same values is harmless.
	RecordArchive(ctx context.Context, id string, obj ArchiveObject, messages int64) error

	// RecordMail records the outcome of emailing one recipient (host or participant):
	// mailedAt when the mail server accepted it, or a permanent failure reason. A
	// recipient with either recorded is not emailed again.
	RecordMail(ctx context.Context, id string, role Role, mailedAt time.Time, failure string) error

	// Complete moves an ending session to StatusCompleted with the transcript link and
	// completion time. Completing a completed session is harmless; ENotFound if none.
	Complete(ctx context.Context, id, link string, at time.Time) error

	// SessionsToPurge lists completed sessions with an archived transcript whose
	// messages are not yet purged, oldest completion first, at most limit of them.
	SessionsToPurge(ctx context.Context, limit int) ([]*Session, error)

	// MarkPurged records that the session's messages were deleted. Repeats are harmless.
	MarkPurged(ctx context.Context, id string, at time.Time) error

	// Ping reports whether the store can be reached (for /readyz).
	Ping(ctx context.Context) error

	Close() error
}

// MessageStore keeps the messages of chat sessions (the original design's DynamoDB
// message table).
// Reading one session's messages is a key range read on every backend, never a scan.
type MessageStore interface {
	// Append stores m as the next message of m.SessionID and returns it with Seq (and
	// CreatedAt, when zero) set, once it is durable: the caller may acknowledge it.
	// Seq is the session's last seq plus one, so seqs run 1, 2, 3… with no gaps, even
	// when several replicas append to the same session at once.
	// If the session already has a message with m.ClientID, nothing is stored and that
	// earlier message is returned with duplicate set to true.
	// Many concurrent Appends may share one transaction (group commit).
	Append(ctx context.Context, m Message) (stored Message, duplicate bool, err error)

	// Messages returns up to limit messages of the session with seq > after, oldest first.
	Messages(ctx context.Context, sessionID string, after int64, limit int) ([]Message, error)

	// LastSeq returns the highest seq stored for the session (0 when none).
	LastSeq(ctx context.Context, sessionID string) (int64, error)

	// DeleteSession deletes every message of the session and returns how many were
	// deleted. Deleting an empty or unknown session is harmless.
	DeleteSession(ctx context.Context, sessionID string) (int64, error)

	// Ping reports whether the store can be reached (for /readyz).
	Ping(ctx context.Context) error

	Close() error
}

// EndChecked is a MessageStore whose Append refuses, with EChatEnded, a message to a
// chat whose end is recorded, deciding it in the same transaction that would store the
// message: a message is stored before the end, or refused. Connections then need not
// re-read the session row to catch an ended event the broker lost.
type EndChecked interface {
	MessageStore
	RefusesAfterEnd()
}
