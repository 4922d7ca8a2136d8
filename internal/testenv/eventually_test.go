package testenv

import (
	"strings"
	"testing"
	"time"
)

func TestEventuallyWaitsForTheCondition(t *testing.T) {
	calls := 0
	r, _ := run(t, func(tb testing.TB) string {
		Eventually(tb, 5*time.Second, func() bool { calls++; return calls == 3 }, "the third call")
		return ""
	})
	if r.failed || calls != 3 {
		t.Fatalf("failed %v (%s) after %d calls, want success on the third", r.failed, r.msg, calls)
	}
}

func TestEventuallyFailsAtTheDeadline(t *testing.T) {
	start := time.Now()
	r, _ := run(t, func(tb testing.TB) string {
		Eventually(tb, 50*time.Millisecond, func() bool { return false }, "nothing")
		return ""
	})
	if !r.failed || !strings.Contains(r.msg, "waiting for nothing") {
		t.Fatalf("failed %v with %q, want a failure naming what was awaited", r.failed, r.msg)
	}
	if took := time.Since(start); took < 50*time.Millisecond || took > 2*time.Second {
		t.Errorf("gave up after %s, want just after 50ms", took)
	}
}
