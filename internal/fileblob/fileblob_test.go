package fileblob

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"parley/internal/chat"
)

func newArchive(t *testing.T) *Archive {
	t.Helper()
	a, err := Open(filepath.Join(t.TempDir(), "archive"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.Close() })
	return a
}

func sum(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

func TestPutStatOpen(t *testing.T) {
	ctx := context.Background()
	a := newArchive(t)
	key := chat.ArchiveKey("0123abcd")
	body := []byte("seq,message\n1,héllo\n")

	obj, err := a.Put(ctx, key, body)
	if err != nil {
		t.Fatal(err)
	}
	want := chat.ArchiveObject{Key: key, Size: int64(len(body)), SHA256: sum(body)}
	if obj != want {
		t.Fatalf("Put = %+v, want %+v", obj, want)
	}
	if got, err := a.Stat(ctx, key); err != nil || got != want {
		t.Fatalf("Stat = %+v, %v; want %+v", got, err, want)
	}
	rc, err := a.Open(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(rc)
	rc.Close()
	if string(got) != string(body) {
		t.Fatalf("Open read %q", got)
	}
	if u, err := a.URL(ctx, key, "x.csv", time.Minute); u != "" || err != nil {
		t.Fatalf("URL = %q, %v; want \"\"", u, err)
	}
	entries, _ := os.ReadDir(filepath.Join(a.Dir(), "transcripts"))
	if len(entries) != 1 {
		t.Fatalf("archive folder holds %d files, want 1 (no temp files left)", len(entries))
	}
}

func TestPutReplaces(t *testing.T) {
	ctx := context.Background()
	a := newArchive(t)
	key := chat.ArchiveKey("s1")
	if _, err := a.Put(ctx, key, []byte("first version, longer")); err != nil {
		t.Fatal(err)
	}
	obj, err := a.Put(ctx, key, []byte("second"))
	if err != nil {
		t.Fatal(err)
	}
	if obj.Size != 6 || obj.SHA256 != sum([]byte("second")) {
		t.Fatalf("after replace: %+v", obj)
	}
}

func TestStatSeesAlteredFile(t *testing.T) {
	ctx := context.Background()
	a := newArchive(t)
	key := chat.ArchiveKey("s2")
	obj, err := a.Put(ctx, key, []byte("abc"))
	if err != nil {
		t.Fatal(err)
	}
	// Same size, different content: only the hash can tell.
	if err := os.WriteFile(filepath.Join(a.Dir(), "transcripts", "s2.csv"), []byte("abd"), 0o640); err != nil {
		t.Fatal(err)
	}
	got, err := a.Stat(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	if got.Size != obj.Size || got.SHA256 == obj.SHA256 {
		t.Fatalf("Stat after edit = %+v, recorded %+v", got, obj)
	}
}

func TestMissing(t *testing.T) {
	ctx := context.Background()
	a := newArchive(t)
	if _, err := a.Stat(ctx, "transcripts/none.csv"); !chat.IsCode(err, chat.ENotFound) {
		t.Fatalf("Stat missing: %v, want not_found", err)
	}
	if _, err := a.Open(ctx, "transcripts/none.csv"); !chat.IsCode(err, chat.ENotFound) {
		t.Fatalf("Open missing: %v, want not_found", err)
	}
}

func TestKeyValidation(t *testing.T) {
	ctx := context.Background()
	a := newArchive(t)
	bad := map[string]string{
		"Empty":         "",
		"DotDot":        "../escape.csv",
		"InnerDotDot":   "transcripts/../../escape.csv",
		"Absolute":      "/etc/passwd",
		"EmptySegment":  "transcripts//x.csv",
		"Hidden":        "transcripts/.tmp-123",
		"Backslash":     `transcripts\..\x.csv`,
		"Space":         "transcripts/a b.csv",
		"TrailingSlash": "transcripts/",
	}
	for name, key := range bad {
		t.Run(name, func(t *testing.T) {
			if _, err := a.Put(ctx, key, []byte("x")); !chat.IsCode(err, chat.EInvalid) {
				t.Fatalf("Put(%q): %v, want invalid", key, err)
			}
			if _, err := a.Stat(ctx, key); !chat.IsCode(err, chat.EInvalid) {
				t.Fatalf("Stat(%q): %v, want invalid", key, err)
			}
			if _, err := a.Open(ctx, key); !chat.IsCode(err, chat.EInvalid) {
				t.Fatalf("Open(%q): %v, want invalid", key, err)
			}
		})
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(a.Dir()), "escape.csv")); err == nil {
		t.Fatal("a file was written outside the archive")
	}
}
