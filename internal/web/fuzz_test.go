package web

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"strings"
	"testing"

	"parley/internal/chat"
)

// FuzzSignInToken feeds any string to the sign-in token parser: it never panics, and
// it accepts exactly the canonical form of 32 bytes in unpadded base64url, whose
// SHA-256 it returns. Seeds are in testdata/fuzz/FuzzSignInToken.
func FuzzSignInToken(f *testing.F) {
	token, _ := newToken()
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
		token, hash := newToken()
		got, err := parseSignInToken(token)
		if err != nil || got != hash || seen[token] {
			t.Fatalf("token %q: %v, hash match %v, repeated %v", token, err, got == hash, seen[token])
		}
		seen[token] = true
	}
}
