package bench

import (
	"bytes"
	"encoding/json"
	"strconv"
	"unicode/utf8"
)

// decodeFrame reads the fields the bench needs from one server frame. Server frames
// are flat JSON objects, so a small scanner reads them without reflection: the load
// generator shares the cores with the server, and every microsecond it spends per
// delivery is taken from the thing measured. Anything the scanner does not expect (a
// nested value, an escape inside a field it keeps) falls back to encoding/json.
func decodeFrame(data []byte, f *frame) error {
	*f = frame{}
	if scanFrame(data, f) {
		return nil
	}
	*f = frame{}
	return json.Unmarshal(data, f)
}

// scanFrame fills f from a flat object; it reports false when data needs the full
// decoder.
func scanFrame(data []byte, f *frame) bool {
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

// scanValue reads one value at i, storing it in f when key is a field the bench keeps,
// and returns the index after it.
func scanValue(data []byte, i int, key []byte, f *frame) (int, bool) {
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
			*dst = string(s)
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

// stringField returns where the value of key goes, nil for keys the bench ignores.
// odd is true for a key that encoding/json would match case-insensitively ("Type"):
// only the full decoder treats those the same way.
func (f *frame) stringField(key []byte) (dst *string, odd bool) {
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
	for _, name := range []string{"type", "id", "from", "code", "session", "seq"} {
		if bytes.EqualFold(key, []byte(name)) {
			return nil, true
		}
	}
	return nil, false
}

// scanString returns the raw contents of the string starting at data[i] == '"' and
// the index after its closing quote.
func scanString(data []byte, i int) ([]byte, int, bool) {
	if i >= len(data) || data[i] != '"' {
		return nil, i, false
	}
	for j := i + 1; j < len(data); j++ {
		switch data[j] {
		case '\\':
			j++
		case '"':
			return data[i+1 : j], j + 1, true
		}
	}
	return nil, i, false
}

func hasEscape(s []byte) bool {
	for _, c := range s {
		if c == '\\' {
			return true
		}
	}
	return false
}

func skipSpace(data []byte, i int) int {
	for i < len(data) && (data[i] == ' ' || data[i] == '\t' || data[i] == '\n' || data[i] == '\r') {
		i++
	}
	return i
}
