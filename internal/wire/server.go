package wire

import (
	"encoding/json"
	"time"

	"parley/internal/chat"
)

// Frame holds the fields of any server frame, for clients that decode with
// encoding/json: tests, end-to-end checks, outside checkers.
type Frame struct {
	Type    string  `json:"type"`
	Session string  `json:"session"`
	Room    string  `json:"room"`
	Role    string  `json:"role"`
	You     string  `json:"you"`
	Peer    *string `json:"peer"`
	Status  string  `json:"status"`
	LastSeq int64   `json:"last_seq"`
	Seq     int64   `json:"seq"`
	ID      string  `json:"id"`
	From    string  `json:"from"`
	To      string  `json:"to"`
	Text    string  `json:"text"`
	Kind    string  `json:"kind"`
	At      string  `json:"at"`
	Email   string  `json:"email"`
	Online  bool    `json:"online"`
	By      string  `json:"by"`
	URL     string  `json:"url"`
	Code    string  `json:"code"`
	Message string  `json:"message"`
	// RetryAfterMS, on a rate_limited error, is how long to wait before sending again.
	RetryAfterMS int64 `json:"retry_after_ms"`
	// Degraded, on a presence frame, names what this replica cannot do right now
	// ("presence"): the online state shown may be stale.
	Degraded string `json:"degraded"`
	// Receipts, on a welcome frame, is each person's cursors (v1.1).
	Receipts map[string]Cursor `json:"receipts"`
	// Received and Read, on a receipt frame, are By's cursors.
	Received int64 `json:"received"`
	Read     int64 `json:"read"`
}

// Cursor is one person's receipts as a welcome frame carries them.
type Cursor struct {
	Received int64 `json:"received"`
	Read     int64 `json:"read"`
}

// The encoders' shapes: one struct per frame type, so each has exactly its fields.
type (
	welcomeFrame struct {
		Type    string  `json:"type"`
		Session string  `json:"session"`
		Room    string  `json:"room"`
		Role    string  `json:"role"`
		You     string  `json:"you"`
		Peer    *string `json:"peer"`
		Status  string  `json:"status"`
		LastSeq int64   `json:"last_seq"`
	}
	// welcomeReceiptsFrame is the v1.1 welcome: receipts added.
	welcomeReceiptsFrame struct {
		welcomeFrame
		Receipts map[string]Cursor `json:"receipts"`
	}
	typingFrame struct {
		Type string `json:"type"`
		From string `json:"from"`
	}
	receiptFrame struct {
		Type     string `json:"type"`
		By       string `json:"by"`
		Received int64  `json:"received"`
		Read     int64  `json:"read"`
	}
	messageFrame struct {
		Type string `json:"type"`
		Seq  int64  `json:"seq"`
		ID   string `json:"id"`
		From string `json:"from"`
		To   string `json:"to"`
		Text string `json:"text"`
		Kind string `json:"kind"`
		At   string `json:"at"`
	}
	ackFrame struct {
		Type string `json:"type"`
		ID   string `json:"id"`
		Seq  int64  `json:"seq"`
	}
	presenceFrame struct {
		Type     string `json:"type"`
		Email    string `json:"email"`
		Online   bool   `json:"online"`
		Degraded string `json:"degraded,omitempty"`
	}
	endedFrame struct {
		Type string `json:"type"`
		By   string `json:"by"`
	}
	transcriptFrame struct {
		Type string `json:"type"`
		URL  string `json:"url"`
	}
	errorFrame struct {
		Type         string `json:"type"`
		Code         string `json:"code"`
		Message      string `json:"message"`
		ID           string `json:"id,omitempty"` // the client frame's id, when it had one
		RetryAfterMS int64  `json:"retry_after_ms,omitempty"`
	}
)

// mustEncode encodes a server frame. Server frames are plain structs of strings,
// numbers and bools, which always encode.
func mustEncode(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic("wire: encoding a server frame: " + err.Error())
	}
	return b
}

// Welcome encodes the first frame of a connection: the session as entered, the
// person's role and the last stored seq.
func Welcome(s *chat.Session, role chat.Role, you string, lastSeq int64) []byte {
	return mustEncode(welcome(s, role, you, lastSeq))
}

func welcome(s *chat.Session, role chat.Role, you string, lastSeq int64) welcomeFrame {
	f := welcomeFrame{Type: TypeWelcome, Session: s.ID, Room: s.Room, Role: string(role),
		You: you, Status: string(s.Status), LastSeq: lastSeq}
	if peer := s.Peer(you); peer != "" {
		f.Peer = &peer
	}
	return f
}

// WelcomeReceipts encodes the v1.1 welcome: Welcome plus "receipts", the cursors of
// the host and of the participant (once there is one), 0 for a person without any.
func WelcomeReceipts(s *chat.Session, role chat.Role, you string, lastSeq int64, cursors map[string]chat.Cursor) []byte {
	r := make(map[string]Cursor, 2)
	for _, email := range s.Recipients() {
		c := cursors[email]
		r[email] = Cursor{Received: c.Received, Read: c.Read}
	}
	return mustEncode(welcomeReceiptsFrame{welcome(s, role, you, lastSeq), r})
}

// Typing encodes the signal that from is typing.
func Typing(from string) []byte { return mustEncode(typingFrame{Type: TypeTyping, From: from}) }

// Receipt encodes by's cursors after one of them advanced.
func Receipt(by string, c chat.Cursor) []byte {
	return mustEncode(receiptFrame{Type: TypeReceipt, By: by, Received: c.Received, Read: c.Read})
}

// Message encodes a stored message. It is called once per message per session (by
// the sender's replica, or by the hub when it reads the store), never per connection.
func Message(m chat.Message) []byte {
	return appendMessage(make([]byte, 0, 128+len(m.Text)+len(m.ClientID)+len(m.From)+len(m.To)), m)
}

// FormatAt writes t as a message frame's "at".
func FormatAt(t time.Time) string { return t.UTC().Format(AtLayout) }

// Ack encodes the acknowledgement of a stored message to its sender.
func Ack(id string, seq int64) []byte {
	return appendAck(make([]byte, 0, 48+len(id)), id, seq)
}

// Presence encodes whether email is online.
func Presence(email string, online bool) []byte {
	return mustEncode(presenceFrame{Type: TypePresence, Email: email, Online: online})
}

// PresenceDegraded encodes a presence frame from a replica that cannot read presence
// right now: online is a guess, and degraded says why.
func PresenceDegraded(email string, online bool, degraded string) []byte {
	return mustEncode(presenceFrame{Type: TypePresence, Email: email, Online: online, Degraded: degraded})
}

// Ended encodes the end of the chat by the person by.
func Ended(by string) []byte { return mustEncode(endedFrame{Type: TypeEnded, By: by}) }

// Transcript encodes the frame telling open connections that the transcript is
// archived and emailed.
func Transcript(url string) []byte {
	return mustEncode(transcriptFrame{Type: TypeTranscript, URL: url})
}

// Error encodes err as an error frame: its code and the message fit to show; id is
// the refused client frame's, if it had one.
func Error(err error, id string) []byte {
	return mustEncode(errorFrame{Type: TypeError, Code: chat.ErrorCode(err), Message: chat.ErrorMessage(err), ID: id})
}

// ErrorRetry encodes a refusal the client may retry after wait (rate_limited).
func ErrorRetry(err error, id string, wait time.Duration) []byte {
	ms := max(1, wait.Milliseconds())
	return mustEncode(errorFrame{Type: TypeError, Code: chat.ErrorCode(err), Message: chat.ErrorMessage(err),
		ID: id, RetryAfterMS: ms})
}
