//go:build !linux

package bench

import "syscall"

// childAttr: outside Linux there is no parent-death signal; the comparison stops its
// servers itself when it ends.
func childAttr() *syscall.SysProcAttr { return nil }
