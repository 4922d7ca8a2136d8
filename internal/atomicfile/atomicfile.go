// Package atomicfile writes files so that a crash leaves either the old file or the
// whole new one, never a torn one: the local transcript archive and the CSV_FILES copy
// both rely on it.
package atomicfile

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// tempPrefix starts the name of every temp file Write makes.
const tempPrefix = ".tmp-"

// StaleAge is how old a temp file must be before RemoveStale takes it for a leftover
// of a crash: a write in progress, even by another process on the same folder, is
// done long before.
const StaleAge = time.Minute

// Write writes body to path so that readers see the old file or the whole
// new one: a temp file in the same folder, fsync, rename, then fsync of the folder so
// the rename itself survives a power cut. Parent folders are created as needed.
func Write(path string, body []byte) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, tempPrefix+"*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // fails harmlessly once renamed
	if _, err := tmp.Write(body); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Chmod(tmp.Name(), 0o640); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	return syncDir(dir)
}

// syncDir makes a rename in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// RemoveStale deletes the temp files Write left under root (at any depth) when the
// process died between creating and renaming them, if they were last modified more
// than StaleAge before now. It returns how many it removed; a root that does not
// exist has none.
func RemoveStale(root string, now time.Time) (int, error) {
	removed := 0
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if !d.Type().IsRegular() || !strings.HasPrefix(d.Name(), tempPrefix) {
			return nil
		}
		info, err := d.Info()
		if err != nil || now.Sub(info.ModTime()) <= StaleAge {
			return nil // gone meanwhile, or a write that may still be running
		}
		if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		removed++
		return nil
	})
	return removed, err
}
