package sqlstore

import (
	"os"
	"testing"

	"golang.org/x/sys/unix"
)

// readOnlyMap maps f for reading only, so a record copied into it faults, as a
// mapped page the disk cannot read back would.
func readOnlyMap(t *testing.T, f *os.File) *logMap {
	t.Helper()
	b, err := unix.Mmap(int(f.Fd()), 0, logSegmentBytes+logMaxMessageRecord, unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	m := &logMap{b: b}
	t.Cleanup(m.unmap)
	return m
}
