//go:build !linux

package sqlstore

import "os"

// preallocate sets f's length to size (the blocks come as records are written).
func preallocate(f *os.File, size int64) error { return f.Truncate(size) }
