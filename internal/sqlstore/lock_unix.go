//go:build unix

package sqlstore

import (
	"errors"
	"os"
	"syscall"

	"parley/internal/chat"
)

// lockFile takes an exclusive lock on path+".lock" for as long as this process keeps
// the SQLite store open: the store keeps messages in memory that only this process
// knows (pending.go), so a second Parley process on the same file (say `parley purge`
// beside `parley serve`) is refused with a clear error instead of writing beside it.
// The lock goes with the process, however it ends.
func lockFile(path string) (func(), error) {
	f, err := os.OpenFile(path+".lock", os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, chat.Wrap(chat.EUnavailable, err, "open the lock file of %s", path)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, chat.Errorf(chat.EUnavailable,
				"the embedded database %s is open in another Parley process; stop that process first (run `parley export` and `parley purge` while `parley serve` is stopped)", path)
		}
		return nil, chat.Wrap(chat.EUnavailable, err, "lock %s", path)
	}
	return func() { f.Close() }, nil
}
