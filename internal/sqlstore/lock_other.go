//go:build !unix

package sqlstore

// lockFile is a no-op where flock is not available: run one Parley process per
// embedded database there.
func lockFile(string) (func(), error) { return func() {}, nil }
