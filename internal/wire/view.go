package wire

import (
	"bytes"
	"encoding/json"
	"strconv"
	"unicode/utf8"
)

// View is the part of a server frame a load generator looks at. The byte slices point
// into the frame's data (no copy, no allocation per frame) and are valid as long as it
// is.
type View struct {
	Type, ID, From, Code, Session []byte
	Seq                           int64
}

// ViewJSON is View for encoding/json, the fallback decoder.
type ViewJSON struct {
	Type    string `json:"type"`
	Seq     int64  `json:"seq"`
	ID      string `json:"id"`
	From    string `json:"from"`
	Code    string `json:"code"`
	Session string `json:"session"`
}

// Strings returns f's fields as strings.
func (f *View) Strings() ViewJSON {
	return ViewJSON{Type: string(f.Type), Seq: f.Seq, ID: string(f.ID), From: string(f.From),
		Code: string(f.Code), Session: string(f.Session)}
}

// DecodeView reads a View from one server frame. Server frames are flat JSON objects,
// so a small scanner reads them without reflection or copies: a load generator shares
// the cores with the server, and every microsecond it spends per delivery is taken
// from the thing measured. Anything the scanner does not expect (a nested value, an
// escape inside a field it keeps) falls back to encoding/json.
func DecodeView(data []byte, f *View) error {
	*f = View{}
	if scanFrame(data, f) {
		return nil
	}
	*f = View{}
	var j ViewJSON
	if err := json.Unmarshal(data, &j); err != nil {
		return err
	}
	*f = View{Type: []byte(j.Type), Seq: j.Seq, ID: []byte(j.ID), From: []byte(j.From),
		Code: []byte(j.Code), Session: []byte(j.Session)}
	return nil
}

// scanFrame fills f from a flat object; it reports false when data needs the full
// decoder.
func scanFrame(data []byte, f *View) bool {
	i := skipSpace(data, 0)
	if i >= len(data) || data[i] != '{' {
		return false
	}
	i = skipSpace(data, i+1)
	if i < len(data) && data[i] == '}' {
		return true
	}
	for {
		key, next, ok := scanString(data, i)
		if !ok || hasEscape(key) {
			return false
		}
		i = skipSpace(data, next)
		if i >= len(data) || data[i] != ':' {
			return false
		}
		if i, ok = scanValue(data, skipSpace(data, i+1), key, f); !ok {
			return false
		}
		i = skipSpace(data, i)
		if i >= len(data) {
			return false
		}
		switch data[i] {
		case ',':
			i = skipSpace(data, i+1)
		case '}':
			return true
		default:
			return false
		}
	}
}

// scanValue reads one value at i, storing it in f when key is a field a View keeps,
// and returns the index after it.
func scanValue(data []byte, i int, key []byte, f *View) (int, bool) {
	if i >= len(data) {
		return i, false
	}
	switch c := data[i]; {
	case c == '"':
		s, next, ok := scanString(data, i)
		if !ok {
			return i, false
		}
		dst, odd := f.stringField(key)
		if odd {
			return i, false
		}
		if dst != nil {
			if hasEscape(s) || !utf8.Valid(s) {
				return i, false
			}
			*dst = s
		}
		return next, true
	case c == '-' || c >= '0' && c <= '9':
		j := i
		for j < len(data) && (data[j] == '-' || data[j] == '+' || data[j] == '.' || data[j] == 'e' || data[j] == 'E' || data[j] >= '0' && data[j] <= '9') {
			j++
		}
		if _, odd := f.stringField(key); odd && string(key) != "seq" {
			return i, false
		}
		if string(key) == "seq" {
			n, err := strconv.ParseInt(string(data[i:j]), 10, 64)
			if err != nil {
				return i, false
			}
			f.Seq = n
		}
		return j, true
	case c == 't' || c == 'f' || c == 'n':
		j := i
		for j < len(data) && data[j] >= 'a' && data[j] <= 'z' {
			j++
		}
		switch string(data[i:j]) {
		case "true", "false", "null":
			return j, true
		}
	}
	return i, false // objects and arrays: the full decoder handles them
}

// stringField returns where the value of key goes, nil for keys a View ignores.
// odd is true for a key that encoding/json would match case-insensitively ("Type"):
// only the full decoder treats those the same way.
func (f *View) stringField(key []byte) (dst *[]byte, odd bool) {
	switch string(key) {
	case "type":
		return &f.Type, false
	case "id":
		return &f.ID, false
	case "from":
		return &f.From, false
	case "code":
		return &f.Code, false
	case "session":
		return &f.Session, false
	}
	return nil, foldsToField(key)
}

// foldsToField reports whether key, not itself a field name, equals one ignoring case.
// A key of lowercase ASCII (every key Parley sends) cannot, so the common case is one
// pass over its bytes.
func foldsToField(key []byte) bool {
	plain := true
	for _, c := range key {
		if c >= 0x80 || c >= 'A' && c <= 'Z' {
			plain = false
			break
		}
	}
	if plain {
		return false
	}
	for _, name := range []string{"type", "id", "from", "code", "session", "seq"} {
		if bytes.EqualFold(key, []byte(name)) {
			return true
		}
	}
	return false
}

// scanString returns the raw contents of the string starting at data[i] == '"' and
// the index after its closing quote.
func scanString(data []byte, i int) ([]byte, int, bool) {
	if i >= len(data) || data[i] != '"' {
		return nil, i, false
	}
	for j := i + 1; j < len(data); {
		k := bytes.IndexByte(data[j:], '"')
		if k < 0 {
			break
		}
		q := j + k
		bs := 0 // backslashes right before the quote: an odd number escapes it
		for p := q - 1; p > i && data[p] == '\\'; p-- {
			bs++
		}
		if bs%2 == 0 {
			return data[i+1 : q], q + 1, true
		}
		j = q + 1
	}
	return nil, i, false
}

func hasEscape(s []byte) bool { return bytes.IndexByte(s, '\\') >= 0 }

func skipSpace(data []byte, i int) int {
	for i < len(data) && (data[i] == ' ' || data[i] == '\t' || data[i] == '\n' || data[i] == '\r') {
		i++
	}
	return i
}
