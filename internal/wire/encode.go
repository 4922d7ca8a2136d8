package wire

import (
	"encoding/json"
	"strconv"
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
	b = m.CreatedAt.UTC().AppendFormat(b, AtLayout) // digits, '-', ':', '.', 'T', 'Z', '+': nothing to escape
	return append(b, `"}`...)
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
		if c := s[i]; c < 0x20 || c >= utf8.RuneSelf || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
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
