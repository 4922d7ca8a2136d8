package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// BuildParley builds the parley binary from cmdDir (the path of cmd/parley relative to
// the calling test's package) into a fresh temporary folder, for tests that run Parley as
// operators do. Call it from TestMain; remove is the folder's cleanup. Build output goes
// to standard error.
func BuildParley(cmdDir string) (binary string, remove func(), err error) {
	dir, err := os.MkdirTemp("", "parley-bin-")
	if err != nil {
		return "", nil, err
	}
	binary = filepath.Join(dir, "parley")
	build := exec.Command("go", "build", "-o", binary, cmdDir)
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		os.RemoveAll(dir)
		return "", nil, fmt.Errorf("building parley: %w", err)
	}
	return binary, func() { os.RemoveAll(dir) }, nil
}
