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
