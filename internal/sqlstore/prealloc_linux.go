package sqlstore

import (
	"os"
	"syscall"
)

// preallocate gives f size bytes of allocated blocks, its length included.
func preallocate(f *os.File, size int64) error {
	for {
		err := syscall.Fallocate(int(f.Fd()), 0, 0, size)
		if err != syscall.EINTR {
			return err
		}
	}
}
