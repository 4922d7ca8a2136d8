package atomicfile

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestWrite(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "nested", "t.csv")
	for _, body := range []string{"first,version\n", "second\n"} {
		if err := Write(path, []byte(body)); err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(path)
		if err != nil || string(got) != body {
			t.Fatalf("read back %q, %v; want %q", got, err, body)
		}
	}
	entries, err := os.ReadDir(filepath.Dir(path))
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 {
		t.Fatalf("folder holds %d entries, want only the file (no temp files left)", len(entries))
	}
}

// TestRemoveStale: temp files left by a crash (at any depth) are removed once older
// than StaleAge; a fresh one (a write that may be running) and real files stay.
func TestRemoveStale(t *testing.T) {
	root := t.TempDir()
	now := time.Now()
	old := now.Add(-2 * StaleAge)
	files := map[string]time.Time{
		".tmp-123":                   old, // stale, top level
		"2026/12/02/.tmp-456":        old, // stale, nested
		"2026/12/02/.tmp-789":        now, // a write in progress
		"2026/12/02/abc.csv":         old, // a transcript
		"2026/12/02/tmp-not-a-temp":  old,
		"2026/12/02/.tmp-dir/inside": old, // a folder named like a temp file is not one
	}
	for name, mtime := range files {
		p := filepath.Join(root, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o750); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("x"), 0o640); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(p, mtime, mtime); err != nil {
			t.Fatal(err)
		}
	}
	n, err := RemoveStale(root, now)
	if err != nil || n != 2 {
		t.Fatalf("RemoveStale = %d, %v; want 2", n, err)
	}
	for name := range files {
		_, err := os.Stat(filepath.Join(root, filepath.FromSlash(name)))
		gone := os.IsNotExist(err)
		if want := name == ".tmp-123" || name == "2026/12/02/.tmp-456"; gone != want {
			t.Errorf("%s: removed %v, want %v", name, gone, want)
		}
	}
	if n, err := RemoveStale(filepath.Join(root, "missing"), now); n != 0 || err != nil {
		t.Fatalf("missing root: %d, %v", n, err)
	}
}
