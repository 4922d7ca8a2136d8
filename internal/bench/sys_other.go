//go:build !unix

package bench

import "errors"

// raiseFileLimit is not available here; the run proceeds with the limit it has.
func raiseFileLimit() (uint64, error) { return 0, errors.New("not supported on this system") }

// selfCPUSeconds is not available here.
func selfCPUSeconds() float64 { return 0 }
