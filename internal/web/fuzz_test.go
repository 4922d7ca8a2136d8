package web

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"

	"parley/internal/chat"
)

// FuzzDecodeFrame feeds any bytes to the client frame decoder: it never panics, and
// whatever it accepts is what the protocol allows: UTF-8 JSON with a type. Seeds are
// in testdata/fuzz/FuzzDecodeFrame; `make fuzz` explores further.
func FuzzDecodeFrame(f *testing.F) {
	for _, s := range []string{
		`{"type":"send","id":"c-1","text":"hello"}`, `{"type":"bye","id":"c-2"}`, `{"type":"end"}`,
		`{"type":""}`, `{}`, `null`, `[]`, `"send"`, `{"type":"send","text":"\ud800"}`,
		"{\"type\":\"send\",\"id\":\"c\",\"text\":\"\xff\"}", `{"type":1}`, `{"type":"send","type":"end"}`,
		`{"type":"send","id":"c-1","text":"a \"quote\" and \\n"}`, `{"type":"send","id":"c-1","text":"hé 😀"}`,
		`{"type":"send","id":"c-1","text":"x"} `, `{"type":"send","id":"c-1","text":"x","id":"c-2"}`,
		`{"type":"send","id":"c-1","text":"tab\there"}`, "{\"type\":\"send\",\"id\":\"c\",\"text\":\"\t\"}",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if fast, ok := decodeSendFast(data); ok && utf8.Valid(data) {
			var slow clientFrame
			if err := json.Unmarshal(data, &slow); err != nil || slow != fast {
				t.Fatalf("fast path read %q as %+v; encoding/json: %+v, %v", data, fast, slow, err)
			}
		}
		fr, err := decodeClientFrame(data)
		if err != nil {
			if chat.ErrorCode(err) != chat.EInvalidFrame {
				t.Fatalf("refusal with code %q, want invalid_frame", chat.ErrorCode(err))
			}
			return
		}
		if fr.Type == "" {
			t.Fatal("accepted a frame without a type")
		}
		if !utf8.Valid(data) || !json.Valid(data) {
			t.Fatalf("accepted a frame that is not UTF-8 JSON: %q", data)
		}
		if !utf8.ValidString(fr.Type) || !utf8.ValidString(fr.ID) || !utf8.ValidString(fr.Text) {
			t.Fatal("decoded fields are not UTF-8")
		}
	})
}

// FuzzSignInToken feeds any string to the sign-in token parser: it never panics, and
// it accepts exactly the canonical form of 32 bytes in unpadded base64url, whose
// SHA-256 it returns. Seeds are in testdata/fuzz/FuzzSignInToken.
func FuzzSignInToken(f *testing.F) {
	token, _ := newSignInToken()
	for _, s := range []string{token, "", "x", strings.Repeat("A", 43), strings.Repeat("_", 43),
		strings.Repeat("A", 42) + "B", strings.Repeat("A", 44), token + "=", strings.Repeat("+", 43)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		hash, err := parseSignInToken(s)
		if err != nil {
			if !chat.IsCode(err, chat.ENotFound) {
				t.Fatalf("refusal with code %q", chat.ErrorCode(err))
			}
			return
		}
		if len(s) != 43 {
			t.Fatalf("accepted a token of %d characters", len(s))
		}
		b, err := base64.RawURLEncoding.DecodeString(s)
		if err != nil || len(b) != 32 || base64.RawURLEncoding.EncodeToString(b) != s {
			t.Fatalf("accepted %q, which is not canonical base64url of 32 bytes", s)
		}
		sum := sha256.Sum256(b)
		if hash != hex.EncodeToString(sum[:]) {
			t.Fatal("hash is not the SHA-256 of the token's bytes")
		}
	})
}

// TestNewSignInTokenParses: every fresh token parses to its own hash, and tokens differ.
func TestNewSignInTokenParses(t *testing.T) {
	seen := make(map[string]bool)
	for range 100 {
		token, hash := newSignInToken()
		got, err := parseSignInToken(token)
		if err != nil || got != hash || seen[token] {
			t.Fatalf("token %q: %v, hash match %v, repeated %v", token, err, got == hash, seen[token])
		}
		seen[token] = true
	}
}
