package web

import (
	"bytes"
	"encoding/json"
	"time"
	"unicode/utf8"

	"parley/internal/chat"
)

// Frame types of the WebSocket protocol (PROTOCOL.md).
const (
	frameSend       = "send"
	frameBye        = "bye"
	frameEnd        = "end"
	frameWelcome    = "welcome"
	frameMessage    = "message"
	frameAck        = "ack"
	framePresence   = "presence"
	frameEnded      = "ended"
	frameTranscript = "transcript"
	frameError      = "error"
)

// atLayout writes message times as RFC 3339 in UTC with exactly six fraction digits,
// the microseconds every store keeps: "2026-11-27T12:00:00.123456Z".
const atLayout = "2006-01-02T15:04:05.000000Z07:00"

// clientFrame is any frame a client sends; Type says which fields matter.
type clientFrame struct {
	Type string `json:"type"`
	ID   string `json:"id"`
	Text string `json:"text"`
}

// decodeClientFrame parses a client frame. Anything that is not a JSON object of the
// right shape is an invalid_frame error; unknown types are left to the caller.
func decodeClientFrame(data []byte) (clientFrame, error) {
	var f clientFrame
	if !utf8.Valid(data) { // json.Unmarshal would turn bad bytes into U+FFFD and store them
		return clientFrame{}, chat.Errorf(chat.EInvalidFrame, "Frames must be UTF-8 text.")
	}
	if f, ok := decodeSendFast(data); ok {
		return f, nil
	}
	if err := json.Unmarshal(data, &f); err != nil {
		return clientFrame{}, chat.Errorf(chat.EInvalidFrame, "A frame must be a JSON object with a \"type\".")
	}
	if f.Type == "" {
		return clientFrame{}, chat.Errorf(chat.EInvalidFrame, "A frame must be a JSON object with a \"type\".")
	}
	return f, nil
}

// decodeSendFast parses the one frame every message costs, exactly as browsers'
// JSON.stringify and parley bench write it: {"type":"send","id":"…","text":"…"}, in
// that order, without white space, and with no escape or control character in id or
// text. For those bytes JSON decoding yields the strings as they are, so encoding/json
// (a tenth of the cost of reading a frame in profiles) is skipped; anything else — other
// frames, key orders, white space, escapes — returns ok false and goes to
// encoding/json. data must already be valid UTF-8. FuzzDecodeFrame checks both agree.
func decodeSendFast(data []byte) (f clientFrame, ok bool) {
	rest, ok := bytes.CutPrefix(data, []byte(`{"type":"send","id":"`))
	if !ok {
		return clientFrame{}, false
	}
	id, rest, ok := plainString(rest)
	if !ok {
		return clientFrame{}, false
	}
	if rest, ok = bytes.CutPrefix(rest, []byte(`,"text":"`)); !ok {
		return clientFrame{}, false
	}
	text, rest, ok := plainString(rest)
	if !ok || string(rest) != "}" {
		return clientFrame{}, false
	}
	return clientFrame{Type: frameSend, ID: string(id), Text: string(text)}, true
}

// plainString splits b at the quote that closes a JSON string begun before b, if the
// string holds no backslash and no control character (which JSON would decode or
// refuse); it returns the string and what follows its closing quote.
func plainString(b []byte) (s, rest []byte, ok bool) {
	for i, c := range b {
		switch {
		case c == '"':
			return b[:i], b[i+1:], true
		case c == '\\' || c < 0x20:
			return nil, nil, false
		}
	}
	return nil, nil, false
}

type welcomeFrame struct {
	Type    string  `json:"type"`
	Session string  `json:"session"`
	Room    string  `json:"room"`
	Role    string  `json:"role"`
	You     string  `json:"you"`
	Peer    *string `json:"peer"`
	Status  string  `json:"status"`
	LastSeq int64   `json:"last_seq"`
}

type messageFrame struct {
	Type string `json:"type"`
	Seq  int64  `json:"seq"`
	ID   string `json:"id"`
	From string `json:"from"`
	To   string `json:"to"`
	Text string `json:"text"`
	Kind string `json:"kind"`
	At   string `json:"at"`
}

type ackFrame struct {
	Type string `json:"type"`
	ID   string `json:"id"`
	Seq  int64  `json:"seq"`
}

type presenceFrame struct {
	Type   string `json:"type"`
	Email  string `json:"email"`
	Online bool   `json:"online"`
}

type endedFrame struct {
	Type string `json:"type"`
	By   string `json:"by"`
}

type transcriptFrame struct {
	Type string `json:"type"`
	URL  string `json:"url"`
}

type errorFrame struct {
	Type    string `json:"type"`
	Code    string `json:"code"`
	Message string `json:"message"`
	ID      string `json:"id,omitempty"` // the client frame's id, when it had one
}

// mustEncode encodes a server frame. Server frames are plain structs of strings,
// numbers and bools, which always encode.
func mustEncode(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic("web: encoding a server frame: " + err.Error())
	}
	return b
}

func encodeWelcome(s *chat.Session, role chat.Role, you string, lastSeq int64) []byte {
	f := welcomeFrame{Type: frameWelcome, Session: s.ID, Room: s.Room, Role: string(role),
		You: you, Status: string(s.Status), LastSeq: lastSeq}
	if peer := s.Peer(you); peer != "" {
		f.Peer = &peer
	}
	return mustEncode(f)
}

// encodeMessage encodes a stored message. It is called once per message per session
// (by the sender's replica, or by the hub when it reads the store), never per connection.
func encodeMessage(m chat.Message) []byte {
	return mustEncode(messageFrame{Type: frameMessage, Seq: m.Seq, ID: m.ClientID, From: m.From,
		To: m.To, Text: m.Text, Kind: string(m.Kind), At: formatAt(m.CreatedAt)})
}

func formatAt(t time.Time) string { return t.UTC().Format(atLayout) }

func encodeAck(id string, seq int64) []byte {
	return mustEncode(ackFrame{Type: frameAck, ID: id, Seq: seq})
}

func encodePresence(email string, online bool) []byte {
	return mustEncode(presenceFrame{Type: framePresence, Email: email, Online: online})
}

func encodeEnded(by string) []byte { return mustEncode(endedFrame{Type: frameEnded, By: by}) }

// encodeTranscript encodes the frame telling open connections that the transcript is
// archived and emailed.
func encodeTranscript(url string) []byte {
	return mustEncode(transcriptFrame{Type: frameTranscript, URL: url})
}

// encodeError encodes err as an error frame: its code and the message fit to show.
func encodeError(err error, id string) []byte {
	return mustEncode(errorFrame{Type: frameError, Code: chat.ErrorCode(err), Message: chat.ErrorMessage(err), ID: id})
}
