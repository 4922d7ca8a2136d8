// Package fileblob is the embedded transcript archive: a local folder that Parley
// serves itself through /transcripts/{session}. Every write is atomic (temp file,
// fsync, rename), so a crash leaves either the old object or the new one, never half a
// transcript that a later Stat would take for the real thing.
package fileblob

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"parley/internal/atomicfile"
	"parley/internal/chat"
)

var _ chat.Archive = (*Archive)(nil)

// Archive keeps objects as files under one folder; an object's key is its path below
// that folder, with '/' separating folders on every platform.
type Archive struct {
	dir string
}

// Open returns the archive kept in dir, creating the folder if needed.
func Open(dir string) (*Archive, error) {
	if dir == "" {
		return nil, chat.Errorf(chat.EInvalid, "archive folder not set")
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, chat.Wrap(chat.EUnavailable, err, "cannot create archive folder")
	}
	return &Archive{dir: dir}, nil
}

// Dir returns the folder the archive keeps its objects in.
func (a *Archive) Dir() string { return a.dir }

// ValidateKey checks that key names a file inside the archive: slash-separated
// segments of letters, digits, '.', '_' and '-', none empty, none starting with '.'
// (which also rules out ".." and the archive's own temp files). Keys come from session
// ids, but the check keeps any future caller from reaching outside the folder.
func ValidateKey(key string) error {
	if key == "" || len(key) > 512 {
		return chat.Errorf(chat.EInvalid, "invalid archive key")
	}
	for _, seg := range strings.Split(key, "/") {
		if seg == "" || seg[0] == '.' {
			return chat.Errorf(chat.EInvalid, "invalid archive key %q", key)
		}
		for i := 0; i < len(seg); i++ {
			c := seg[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
				return chat.Errorf(chat.EInvalid, "invalid archive key %q", key)
			}
		}
	}
	return nil
}

// path returns the file that holds key, after checking the key.
func (a *Archive) path(key string) (string, error) {
	if err := ValidateKey(key); err != nil {
		return "", err
	}
	return filepath.Join(a.dir, filepath.FromSlash(key)), nil
}

// Put stores body under key atomically and returns the object as read back from disk.
func (a *Archive) Put(ctx context.Context, key string, body []byte) (chat.ArchiveObject, error) {
	p, err := a.path(key)
	if err != nil {
		return chat.ArchiveObject{}, err
	}
	if err := ctx.Err(); err != nil {
		return chat.ArchiveObject{}, chat.Wrap(chat.EUnavailable, err, "archive put cancelled")
	}
	if err := atomicfile.Write(p, body); err != nil {
		return chat.ArchiveObject{}, chat.Wrap(chat.EUnavailable, err, "cannot write archive object")
	}
	return a.Stat(ctx, key)
}

// Stat reads the object whole and returns its size and SHA-256, so that a confirmed
// archive really holds the bytes that were recorded (a truncated or edited file fails).
func (a *Archive) Stat(ctx context.Context, key string) (chat.ArchiveObject, error) {
	f, err := a.open(key)
	if err != nil {
		return chat.ArchiveObject{}, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, contextReader{ctx, f})
	if err != nil {
		return chat.ArchiveObject{}, chat.Wrap(chat.EUnavailable, err, "cannot read archive object")
	}
	return chat.ArchiveObject{Key: key, Size: n, SHA256: hex.EncodeToString(h.Sum(nil))}, nil
}

// Open returns the object's content, or ENotFound.
func (a *Archive) Open(ctx context.Context, key string) (io.ReadCloser, error) {
	if err := ctx.Err(); err != nil {
		return nil, chat.Wrap(chat.EUnavailable, err, "archive open cancelled")
	}
	return a.open(key)
}

// open opens the file of key, translating "does not exist" into ENotFound.
func (a *Archive) open(key string) (*os.File, error) {
	p, err := a.path(key)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, chat.Errorf(chat.ENotFound, "no archived transcript %q", key)
	}
	if err != nil {
		return nil, chat.Wrap(chat.EUnavailable, err, "cannot open archive object")
	}
	return f, nil
}

// URL returns "": a local archive has no links of its own, so Parley serves Open.
func (a *Archive) URL(ctx context.Context, key, filename string, ttl time.Duration) (string, error) {
	return "", nil
}

// Close releases nothing; it exists so the archive shuts down like every component.
func (a *Archive) Close() error { return nil }

// contextReader stops a long read when its context is cancelled.
type contextReader struct {
	ctx context.Context
	r   io.Reader
}

// Read implements io.Reader.
func (c contextReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
