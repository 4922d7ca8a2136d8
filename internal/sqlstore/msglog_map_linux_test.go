package sqlstore

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"unsafe"

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

// TestLogSyncDropsWrittenPages syncs a mapped segment part-way: the pages written in
// full leave the mapping (so the sync's writeback has no mapped page to
// write-protect), the page being filled and those ahead stay, and every byte still
// reads back, from the file and through the mapping, before and after more records.
func TestLogSyncDropsWrittenPages(t *testing.T) {
	f, err := os.OpenFile(filepath.Join(t.TempDir(), "seg"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	size := 64 * pageSize
	if err := preallocate(f, int64(size)); err != nil {
		t.Fatal(err)
	}
	m := mapSegment(f, size)
	if m == nil {
		t.Fatal("the segment could not be mapped")
	}
	defer m.unmap()
	want := make([]byte, size)
	put := func(from, to int) {
		t.Helper()
		for i := from; i < to; i++ {
			want[i] = byte(i*7 + 1)
		}
		if err := m.put(int64(from), want[from:to]); err != nil {
			t.Fatal(err)
		}
	}
	check := func(what string) {
		t.Helper()
		got := make([]byte, size)
		if _, err := f.ReadAt(got, 0); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("%s: the file does not hold what was put", what)
		}
		if !bytes.Equal(m.b, want) {
			t.Fatalf("%s: the mapping does not read back what was put", what)
		}
	}
	before := mappedKiB(t, m.b)
	written := 10*pageSize + pageSize/2
	put(0, written)
	if err := m.sync(int64(written)); err != nil {
		t.Fatal(err)
	}
	after := mappedKiB(t, m.b)
	if drop := before - after; drop < 10*pageSize/1024 {
		t.Fatalf("the mapping held %d KiB before the sync and %d after: the 10 pages written in full stayed mapped", before, after)
	}
	if after < (size-11*pageSize)/1024 {
		t.Fatalf("the mapping holds %d KiB after the sync: pages not yet written in full left it", after)
	}
	check("after the first sync")
	put(written, 20*pageSize)
	if err := m.sync(int64(20 * pageSize)); err != nil {
		t.Fatal(err)
	}
	check("after the second sync")
}

// mappedKiB returns the resident size of the mapping that starts at b, from
// /proc/self/smaps.
func mappedKiB(t *testing.T, b []byte) int {
	t.Helper()
	smaps, err := os.ReadFile("/proc/self/smaps")
	if err != nil {
		t.Fatal(err)
	}
	start := fmt.Sprintf("%x-", uintptr(unsafe.Pointer(&b[0])))
	found := false
	for line := range strings.Lines(string(smaps)) {
		if strings.HasPrefix(line, start) {
			found = true
			continue
		}
		if rss, ok := strings.CutPrefix(line, "Rss:"); ok && found {
			kib, err := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(rss), " kB"))
			if err != nil {
				t.Fatal(err)
			}
			return kib
		}
	}
	t.Fatalf("no mapping at %s in /proc/self/smaps", start)
	return 0
}
