// Package atomicfile writes files so that a crash leaves either the old file or the
// whole new one, never a torn one: the local transcript archive and the CSV_FILES copy
// both rely on it.
package atomicfile

import (
	"os"
	"path/filepath"
)

// Write writes body to path so that readers see the old file or the whole
// new one: a temp file in the same folder, fsync, rename, then fsync of the folder so
// the rename itself survives a power cut. Parent folders are created as needed.
func Write(path string, body []byte) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, ".tmp-*")
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
