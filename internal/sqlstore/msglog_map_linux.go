package sqlstore

import (
	"errors"
	"fmt"
	"os"
	"runtime/debug"
	"sync"

	"golang.org/x/sys/unix"
)

// logMap is a segment file mapped into memory (MAP_SHARED), so a record is copied
// into the page cache without a system call. The whole segment is mapped and faulted
// in writable when the segment is made ready (MADV_POPULATE_WRITE, beside the append
// lock), so a copy takes no page fault either; the checkpointer syncs only the part
// written so far (msync of that range), which leaves the pages ahead writable. A
// process crash leaves the copied records in the page cache, as write(2) does. The
// price is memory: a mapped segment's 9 MiB count in the process's resident memory
// (file pages, which the kernel may write out and drop once synced), two segments'
// worth while the next one is made ready.
type logMap struct {
	mu sync.Mutex // held while syncing or unmapping: a sync never meets an unmapped range
	b  []byte     // nil once unmapped
	// zapped is how much of b, from its start, has had its page table entries
	// dropped (sync); a multiple of the page size.
	zapped int
}

// mapSegment maps size bytes of f (opened for reading and writing, its blocks
// allocated) and faults them in writable. It returns nil where the file cannot be
// mapped; records are then written with write(2).
func mapSegment(f *os.File, size int) *logMap {
	b, err := unix.Mmap(int(f.Fd()), 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return nil
	}
	// Without it (kernels before 5.14) each page faults on its first record instead.
	_ = unix.Madvise(b, unix.MADV_POPULATE_WRITE)
	return &logMap{b: b}
}

// errLogMapFault is a copy into the mapping that faulted (the disk failed to read a
// page back in): the record is not in the log.
var errLogMapFault = errors.New("the message log's mapped segment faulted")

// put copies rec to offset off. A fault in the copy (an I/O error) is returned as an
// error instead of ending the process. Called under the log lock.
func (m *logMap) put(off int64, rec []byte) (err error) {
	if off < 0 || off+int64(len(rec)) > int64(len(m.b)) {
		return fmt.Errorf("a record of %d bytes does not fit the message log segment", len(rec))
	}
	old := debug.SetPanicOnFault(true)
	defer func() {
		debug.SetPanicOnFault(old)
		if r := recover(); r != nil {
			err = errLogMapFault
		}
	}()
	copy(m.b[off:], rec)
	return nil
}

// sync makes the first n bytes durable (msync, MS_SYNC: the file system's sync of
// that range), unless the mapping is gone. Records are only ever added after n, so
// the pages below n written in full are dropped from the mapping first
// (MADV_DONTNEED: their data stays in the page cache, dirty, and a later read would
// fault it back in). The sync's writeback write-protects every mapped page it writes,
// each with a TLB flush of its own (an interrupt of the other processors); a page no
// longer mapped needs none, and dropping the range costs one flush for all of it.
func (m *logMap) sync(n int64) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.b == nil || n <= 0 {
		return nil
	}
	n = min(n, int64(len(m.b)))
	if full := int(n) &^ (pageSize - 1); full > m.zapped {
		if err := unix.Madvise(m.b[m.zapped:full], unix.MADV_DONTNEED); err == nil {
			m.zapped = full
		}
	}
	return unix.Msync(m.b[:n], unix.MS_SYNC)
}

// pageSize is the size of a page of memory (a power of two).
var pageSize = os.Getpagesize()

// unmap removes the mapping; the dirty pages stay in the page cache for the file's
// own sync.
func (m *logMap) unmap() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.b != nil {
		_ = unix.Munmap(m.b)
		m.b = nil
	}
}
