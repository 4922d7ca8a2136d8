package wire

import (
	"bytes"
	"encoding/json"
	"unicode/utf8"

	"parley/internal/chat"
)

// ClientFrame is any frame a client sends; Type says which fields matter: ID and Text
// for send and bye, Seq for the v1.1 receipts (received, read; 0 when absent).
type ClientFrame struct {
	Type string `json:"type"`
	ID   string `json:"id"`
	Text string `json:"text"`
	Seq  int64  `json:"seq"`
}

// errNotAFrame refuses anything that is not a JSON object with a type.
var errNotAFrame = chat.Errorf(chat.EInvalidFrame, "A frame must be a JSON object with a \"type\".")

// DecodeClient parses a client frame. Anything that is not a UTF-8 JSON object with a
// type is an invalid_frame error; unknown types are left to the caller.
func DecodeClient(data []byte) (ClientFrame, error) {
	if !utf8.Valid(data) { // json.Unmarshal would turn bad bytes into U+FFFD and store them
		return ClientFrame{}, chat.Errorf(chat.EInvalidFrame, "Frames must be UTF-8 text.")
	}
	if f, ok := DecodeSendFast(data); ok {
		return f, nil
	}
	if f, ok := DecodeSignalFast(data); ok {
		return f, nil
	}
	var f ClientFrame // declared here: escaping to json.Unmarshal, it is an allocation
	if err := json.Unmarshal(data, &f); err != nil || f.Type == "" {
		return ClientFrame{}, errNotAFrame
	}
	return f, nil
}

// DecodeSendFast parses the one frame every message costs, exactly as browsers'
// JSON.stringify and parley bench write it: {"type":"send","id":"…","text":"…"}, in
// that order, without white space, and with no escape or control character in id or
// text. For those bytes JSON decoding yields the strings as they are, so encoding/json
// (a tenth of the cost of reading a frame in profiles) is skipped; anything else — other
// frames, key orders, white space, escapes — returns ok false and goes to
// encoding/json. data must already be valid UTF-8. FuzzDecodeClient checks both agree.
func DecodeSendFast(data []byte) (f ClientFrame, ok bool) {
	const head, middle = `{"type":"send","id":"`, `","text":"`
	rest, ok := bytes.CutPrefix(data, []byte(head))
	if !ok {
		return ClientFrame{}, false
	}
	id, rest, ok := plainString(rest)
	if !ok {
		return ClientFrame{}, false
	}
	if rest, ok = bytes.CutPrefix(rest, []byte(middle[1:])); !ok { // plainString took the id's closing quote
		return ClientFrame{}, false
	}
	text, rest, ok := plainString(rest)
	if !ok || string(rest) != "}" {
		return ClientFrame{}, false
	}
	// The id and the text from one string (the bytes from the id's start to the
	// text's end): one allocation instead of two, and the message keeps both anyway.
	both := string(data[len(head) : len(head)+len(id)+len(middle)+len(text)])
	return ClientFrame{Type: TypeSend, ID: both[:len(id)], Text: both[len(id)+len(middle):]}, true
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

// DecodeSignalFast parses the v1.1 signals exactly as the room page's JSON.stringify
// writes them — {"type":"typing"}, {"type":"received","seq":N}, {"type":"read","seq":N}
// with N plain decimal digits — without encoding/json, so a browser's typing and
// receipts cost no allocation. Anything else returns ok false and goes to
// encoding/json. FuzzDecodeClient checks both agree.
func DecodeSignalFast(data []byte) (f ClientFrame, ok bool) {
	if string(data) == `{"type":"typing"}` {
		return ClientFrame{Type: TypeTyping}, true
	}
	typ := TypeReceived
	rest, ok := bytes.CutPrefix(data, []byte(`{"type":"received","seq":`))
	if !ok {
		typ = TypeRead
		if rest, ok = bytes.CutPrefix(data, []byte(`{"type":"read","seq":`)); !ok {
			return ClientFrame{}, false
		}
	}
	digits, ok := bytes.CutSuffix(rest, []byte("}"))
	if !ok || len(digits) == 0 || len(digits) > 18 || (digits[0] == '0' && len(digits) > 1) {
		return ClientFrame{}, false // empty, too long to be a seq, or not JSON (a leading zero)
	}
	var n int64
	for _, c := range digits {
		if c < '0' || c > '9' {
			return ClientFrame{}, false
		}
		n = n*10 + int64(c-'0')
	}
	return ClientFrame{Type: typ, Seq: n}, true
}
