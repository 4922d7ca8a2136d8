// Package chat is Parley's domain: chat sessions, messages, the rules that govern
// them (who is host, when a room is full, when a chat has ended) and the interfaces
// that every backend implements. It imports no other Parley package, so the rules
// live in one place and every store, bus, queue, archive and mailer plugs in here.
package chat

import (
	"crypto/rand"
	"encoding/hex"
	"time"
)

// Role is a person's place in a chat session.
type Role string

// The two roles of a one-to-one chat. The first person to enter a room is the host,
// the second distinct person the participant.
const (
	RoleHost        Role = "host"
	RoleParticipant Role = "participant"
	RoleNone        Role = ""
)

// Status is where a chat session is in its life.
type Status string

// A session is in progress until someone ends it; it is ending while its transcript is
// exported, archived and emailed; it is completed when all of that is recorded. The
// ending state is the durable record of export work still to do.
const (
	StatusInProgress Status = "inprogress"
	StatusEnding     Status = "ending"
	StatusCompleted  Status = "completed"
)

// Session is one conversation in a room (a row of the sessions table) plus what the
// end-of-chat job needs to be safe to repeat: the archive record, who was emailed and
// when, and whether its messages were purged.
type Session struct {
	ID               string
	Room             string
	HostEmail        string
	ParticipantEmail string // empty until a second person enters
	Status           Status
	InitiatedAt      time.Time
	EndedAt          time.Time // zero while in progress
	EndedBy          string
	CompletedAt      time.Time // zero until completed

	// ChatHistory is the transcript link given to people (chatHistory in the original
	// design's table):
	// a path on Parley, /transcripts/{id}, which checks who asks before serving.
	ChatHistory string

	Archive ArchiveObject // zero Key until the transcript is archived
	// MessageCount is the number of messages in the archived transcript.
	MessageCount int64

	HostMailedAt        time.Time // zero until the host's email was accepted
	ParticipantMailedAt time.Time
	// MailError records a permanent mail failure per recipient ("" when none), so a
	// rejected address is shown on the history page instead of being dropped.
	HostMailError        string
	ParticipantMailError string

	PurgedAt time.Time // zero until its messages were deleted from the message store
}

// RoleOf tells which role email has in the session, or RoleNone.
func (s *Session) RoleOf(email string) Role {
	switch {
	case email == "":
		return RoleNone
	case email == s.HostEmail:
		return RoleHost
	case email == s.ParticipantEmail:
		return RoleParticipant
	}
	return RoleNone
}

// Peer returns the other person of the chat as seen by email ("" when there is none yet).
func (s *Session) Peer(email string) string {
	if email == s.HostEmail {
		return s.ParticipantEmail
	}
	return s.HostEmail
}

// Full reports whether both roles are taken.
func (s *Session) Full() bool { return s.HostEmail != "" && s.ParticipantEmail != "" }

// Ended reports whether the chat no longer accepts messages.
func (s *Session) Ended() bool { return s.Status != StatusInProgress }

// Recipients lists the people who receive the transcript, host first.
func (s *Session) Recipients() []string {
	if s.ParticipantEmail == "" {
		return []string{s.HostEmail}
	}
	return []string{s.HostEmail, s.ParticipantEmail}
}

// Kind tells what a message is.
type Kind string

// Message kinds. A bye is the standard leaving message ("Say bye"), stored like any
// other; system messages are written by Parley itself.
const (
	KindChat   Kind = "chat"
	KindBye    Kind = "bye"
	KindSystem Kind = "system"
)

// ByeText is the standard leaving message sent by the "Say bye" button.
const ByeText = "Bye! I am leaving the chat now."

// Message is one stored message of a session (an item of the DynamoDB message table).
// Seq orders a session's messages: 1, 2, 3… with no gaps, so a gap is always visible.
type Message struct {
	SessionID string
	Seq       int64
	ClientID  string // chosen by the sender; a resend with the same id stores nothing
	From      string
	To        string // the other party at the time of sending ("" if none yet)
	Room      string
	Kind      Kind
	Text      string
	CreatedAt time.Time
}

// NewSessionID returns a fresh random session id: 32 hex characters, not guessable,
// and free of room names and emails so it can name archive objects.
func NewSessionID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails on supported platforms
	return hex.EncodeToString(b[:])
}

// monoStart is what Mono counts from.
var monoStart = time.Now()

// Mono is a monotonic clock in nanoseconds since the process started, never 0: one
// clock read where time.Now takes two (the wall clock as well), for the live path's
// stamps. A connection's reader reads it once per frame and hands the value to what
// stamps that frame (when it was heard, when its handling began, its rate limit,
// which send queues are overdue): on a VM a clock read can cost 50–100 ns.
func Mono() int64 { return int64(time.Since(monoStart)) + 1 }

// MonoTime is the time.Time of a Mono reading, for what takes a time.Time (a rate
// limiter): only its differences from other MonoTimes mean anything.
func MonoTime(mono int64) time.Time { return monoStart.Add(time.Duration(mono)) }

// Now returns the current time in UTC truncated to microseconds, the precision every
// store keeps, so a value read back equals the value written.
func Now() time.Time { return time.Now().UTC().Truncate(time.Microsecond) }
