package testenv

import (
	"testing"
	"time"
)

// Eventually polls cond until it holds, failing t with msg once timeout has passed.
// It is for conditions that have no channel or callback to wait on; it polls every
// millisecond at first and backs off to every 20 ms, so a quick condition is seen at
// once and a slow one costs little CPU. Like t.Fatal, call it only from the test's
// own goroutine; cond may itself call t.Fatal to stop early.
func Eventually(t testing.TB, timeout time.Duration, cond func() bool, msg string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for pause := time.Millisecond; !cond(); pause = min(2*pause, 20*time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, msg)
		}
		time.Sleep(pause)
	}
}
