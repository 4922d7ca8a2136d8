package wire

import (
	"encoding/json"
	"strconv"
	"time"
	"unicode/utf8"

	"parley/internal/chat"
)

// The message frame and the ack are encoded once per message on the send path, so
// they are appended by hand instead of through encoding/json's reflection: the same
// bytes (field order, escaping, HTML-safe escapes; FuzzEncodeFast checks them against
// encoding/json), in one allocation.

// appendMessage appends the message frame of m.
func appendMessage(b []byte, m chat.Message) []byte {
	b = append(b, `{"type":`...)
	b = appendJSONString(b, TypeMessage)
	b = append(b, `,"seq":`...)
	b = strconv.AppendInt(b, m.Seq, 10)
	b = append(b, `,"id":`...)
	b = appendJSONString(b, m.ClientID)
	b = append(b, `,"from":`...)
	b = appendJSONString(b, m.From)
	b = append(b, `,"to":`...)
	b = appendJSONString(b, m.To)
	b = append(b, `,"text":`...)
	b = appendJSONString(b, m.Text)
	b = append(b, `,"kind":`...)
	b = appendJSONString(b, string(m.Kind))
	b = append(b, `,"at":"`...)
	b = appendAt(b, m.CreatedAt) // digits, '-', ':', '.', 'T', 'Z', '+': nothing to escape
	return append(b, `"}`...)
}

// appendAt appends t as AtLayout does, for the years of four digits without going
// through the layout (a third of the frame's cost); other years go through it.
func appendAt(b []byte, t time.Time) []byte {
	t = t.UTC()
	year, month, day := t.Date()
	if year < 0 || year > 9999 {
		return t.AppendFormat(b, AtLayout)
	}
	hour, minute, sec := t.Clock()
	b = appendDigits(b, year, 4)
	b = append(b, '-')
	b = appendDigits(b, int(month), 2)
	b = append(b, '-')
	b = appendDigits(b, day, 2)
	b = append(b, 'T')
	b = appendDigits(b, hour, 2)
	b = append(b, ':')
	b = appendDigits(b, minute, 2)
	b = append(b, ':')
	b = appendDigits(b, sec, 2)
	b = append(b, '.')
	b = appendDigits(b, t.Nanosecond()/1000, 6) // truncated, as the layout does
	return append(b, 'Z')
}

// appendDigits appends the n lowest decimal digits of v ≥ 0, zero-padded.
func appendDigits(b []byte, v, n int) []byte {
	b = append(b, "000000"[:n]...)
	for i := len(b) - 1; n > 0; i, n = i-1, n-1 {
		b[i] = byte('0' + v%10)
		v /= 10
	}
	return b
}

// appendAck appends the ack of message id, stored as seq.
func appendAck(b []byte, id string, seq int64) []byte {
	b = append(b, `{"type":`...)
	b = appendJSONString(b, TypeAck)
	b = append(b, `,"id":`...)
	b = appendJSONString(b, id)
	b = append(b, `,"seq":`...)
	b = strconv.AppendInt(b, seq, 10)
	return append(b, '}')
}

// appendJSONString appends s as encoding/json writes it. Printable ASCII other than
// '"', '\\' and the HTML-escaped '<', '>', '&' is copied; a string with anything else
// goes through encoding/json, so every escape stays exactly its.
func appendJSONString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if !plainJSON[s[i]] {
			q, err := json.Marshal(s)
			if err != nil { // a string always encodes
				panic("wire: encoding a string: " + err.Error())
			}
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// plainJSON marks the bytes appendJSONString copies as they are.
var plainJSON = func() (t [256]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\' && c != '<' && c != '>' && c != '&'
	}
	return t
}()
