//go:build !linux

package sqlstore

import (
	"os"
	"testing"
)

func readOnlyMap(*testing.T, *os.File) *logMap { return nil }
