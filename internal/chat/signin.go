package chat

import (
	"context"
	"time"
)

// SignInTTL is how long an emailed sign-in link stays valid.
const SignInTTL = 15 * time.Minute

// SignInStore keeps pending sign-in links. A link carries a random token; only the
// token's SHA-256 (hex) is stored, so a copy of the database cannot sign anyone in.
// Each token is bound to the email it was sent to and the room to continue to, and can
// be used once: of several concurrent ConsumeSignIn calls with one hash, exactly one
// succeeds, on every replica.
type SignInStore interface {
	// CreateSignIn stores a pending sign-in valid until expires. It may delete
	// pending sign-ins that expired long ago.
	CreateSignIn(ctx context.Context, tokenHash, email, room string, expires time.Time) error

	// ConsumeSignIn deletes the pending sign-in with tokenHash and returns its email
	// and room. A token that is unknown, already used or expired at now gives
	// ENotFound, and a second call with the same hash always does.
	ConsumeSignIn(ctx context.Context, tokenHash string, now time.Time) (email, room string, err error)
}

// LoginTTL is how long a sign-in lasts: a fixed 30 days from the moment the person
// signed in, however often they come back (not sliding, so a stolen cookie cannot be
// kept alive by using it).
const LoginTTL = 30 * 24 * time.Hour

// Login is one signed-in browser (a sign-in session): the cookie names it by a random
// token whose SHA-256 (hex) is the key it is stored under.
type Login struct {
	Email string
	// Verified is true when the email was proven by an emailed link; a typed-in email
	// under trust sign-in is not verified.
	Verified  bool
	CreatedAt time.Time
	ExpiresAt time.Time
}

// LoginStore keeps sign-ins server-side, so that signing out ends a cookie at once
// instead of when it expires. Only the SHA-256 of a cookie's token is stored, so a copy
// of the database cannot sign anyone in. Every replica reads the same rows.
type LoginStore interface {
	// CreateLogin stores a sign-in under tokenHash. It may delete sign-ins that
	// expired long ago.
	CreateLogin(ctx context.Context, tokenHash string, l Login) error

	// Login returns the sign-in stored under tokenHash. A hash that is unknown,
	// revoked, or whose sign-in has expired at now gives ENotFound.
	Login(ctx context.Context, tokenHash string, now time.Time) (Login, error)

	// RevokeLogin ends the sign-in under tokenHash: Login gives ENotFound for it from
	// then on, on every replica. Revoking an unknown or revoked hash is harmless.
	RevokeLogin(ctx context.Context, tokenHash string) error

	// RevokeLogins ends every sign-in of email ("sign out everywhere") and returns how
	// many there were.
	RevokeLogins(ctx context.Context, email string) (int64, error)
}
