package cli

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// cookieKey returns the key that signs cookies: PARLEY_COOKIE_KEY when set (hex, at
// least 32 bytes), else a key generated once and kept in DATA_DIR/cookie.key (mode
// 0600), so sign-ins survive restarts without any setup.
func cookieKey(c Config) ([]byte, error) {
	if c.CookieKey != "" {
		key, err := hex.DecodeString(c.CookieKey)
		if err != nil || len(key) < 32 {
			return nil, errors.New("PARLEY_COOKIE_KEY must be at least 32 bytes written as hex (64+ hex digits)")
		}
		return key, nil
	}
	path := filepath.Join(c.DataDir, "cookie.key")
	b, err := os.ReadFile(path)
	if err == nil {
		key, derr := hex.DecodeString(strings.TrimSpace(string(b)))
		if derr != nil || len(key) < 32 {
			return nil, fmt.Errorf("%s is damaged: delete it to generate a new key (everyone signs in again)", path)
		}
		return key, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	return createCookieKey(c)
}

// createCookieKey writes a new random key to DATA_DIR/cookie.key unless another
// process got there first: the file is created exclusively and written in full before
// it is linked into place, so two replicas starting together on one data folder end up
// with the same key.
func createCookieKey(c Config) ([]byte, error) {
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return nil, err
	}
	path := filepath.Join(c.DataDir, "cookie.key")
	tmp, err := os.CreateTemp(c.DataDir, "cookie.key.*")
	if err != nil {
		return nil, err
	}
	defer os.Remove(tmp.Name())
	_, werr := tmp.WriteString(hex.EncodeToString(key) + "\n")
	if err := errors.Join(werr, tmp.Sync(), tmp.Close()); err != nil {
		return nil, err
	}
	if err := os.Link(tmp.Name(), path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return cookieKey(c) // another process won: use its key
		}
		return nil, err
	}
	return key, nil
}
