//go:build !linux

package sqlstore

import (
	"errors"
	"os"
)

// logMap is a mapped segment; on this platform segments are not mapped, and
// records are written with write(2).
type logMap struct{}

func mapSegment(*os.File, int) *logMap { return nil }

func (*logMap) put(int64, []byte) error { return errors.New("the message log is not mapped") }
func (*logMap) sync(int64) error        { return nil }
func (*logMap) unmap()                  {}
