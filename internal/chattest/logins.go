package chattest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"testing"
	"time"

	"parley/internal/chat"
)

// RunLoginStore runs the LoginStore conformance suite. open returns a store for one
// subtest (fresh or shared); the suite does not close it.
func RunLoginStore(t *testing.T, open func(t *testing.T) chat.LoginStore) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s chat.LoginStore)
	}{
		{"CreateThenRead", testLoginRoundTrip},
		{"Unknown", testLoginUnknown},
		{"Expires", testLoginExpires},
		{"RevokeOne", testLoginRevokeOne},
		{"RevokeEverywhere", testLoginRevokeEverywhere},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, open(t)) })
	}
}

// tokenHash returns a random hash as a cookie's token would give.
func tokenHash() string {
	var b [32]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// newLogin stores a sign-in of email made at at(n), expiring LoginTTL later.
func newLogin(t *testing.T, s chat.LoginStore, email string, verified bool, n int) (string, chat.Login) {
	t.Helper()
	h := tokenHash()
	l := chat.Login{Email: email, Verified: verified, CreatedAt: at(n), ExpiresAt: at(n).Add(chat.LoginTTL)}
	must(t, s.CreateLogin(context.Background(), h, l))
	return h, l
}

func testLoginRoundTrip(t *testing.T, s chat.LoginStore) {
	for _, verified := range []bool{true, false} {
		h, want := newLogin(t, s, email("a"), verified, 0)
		got, err := s.Login(context.Background(), h, at(1))
		must(t, err)
		if got.Email != want.Email || got.Verified != verified || !got.CreatedAt.Equal(want.CreatedAt) || !got.ExpiresAt.Equal(want.ExpiresAt) {
			t.Fatalf("Login = %+v, want %+v", got, want)
		}
	}
}

func testLoginUnknown(t *testing.T, s chat.LoginStore) {
	_, err := s.Login(context.Background(), tokenHash(), at(0))
	wantCode(t, err, chat.ENotFound)
	must(t, s.RevokeLogin(context.Background(), tokenHash())) // harmless
}

func testLoginExpires(t *testing.T, s chat.LoginStore) {
	h, l := newLogin(t, s, email("a"), true, 0)
	if _, err := s.Login(context.Background(), h, l.ExpiresAt.Add(-time.Microsecond)); err != nil {
		t.Fatalf("just before expiry: %v", err)
	}
	_, err := s.Login(context.Background(), h, l.ExpiresAt)
	wantCode(t, err, chat.ENotFound)
}

func testLoginRevokeOne(t *testing.T, s chat.LoginStore) {
	ctx := context.Background()
	a := email("a")
	h1, _ := newLogin(t, s, a, true, 0)
	h2, _ := newLogin(t, s, a, true, 1)
	must(t, s.RevokeLogin(ctx, h1))
	_, err := s.Login(ctx, h1, at(2))
	wantCode(t, err, chat.ENotFound)
	if _, err := s.Login(ctx, h2, at(2)); err != nil {
		t.Fatalf("the other browser's sign-in was revoked too: %v", err)
	}
	must(t, s.RevokeLogin(ctx, h1)) // again: harmless
}

func testLoginRevokeEverywhere(t *testing.T, s chat.LoginStore) {
	ctx := context.Background()
	a, b := email("a"), email("b")
	var mine []string
	for i := range 3 {
		h, _ := newLogin(t, s, a, i%2 == 0, i)
		mine = append(mine, h)
	}
	other, _ := newLogin(t, s, b, true, 0)
	n, err := s.RevokeLogins(ctx, a)
	must(t, err)
	if n != 3 {
		t.Fatalf("RevokeLogins = %d, want 3", n)
	}
	for _, h := range mine {
		_, err := s.Login(ctx, h, at(5))
		wantCode(t, err, chat.ENotFound)
	}
	if _, err := s.Login(ctx, other, at(5)); err != nil {
		t.Fatalf("someone else's sign-in was revoked: %v", err)
	}
	if n, err := s.RevokeLogins(ctx, a); err != nil || n != 0 {
		t.Fatalf("second RevokeLogins = %d, %v; want 0", n, err)
	}
}
