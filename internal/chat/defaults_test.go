package chat

import (
	"testing"
	"time"
)

func TestSetDefault(t *testing.T) {
	n, neg, set := 0, -3, 7
	SetDefault(&n, 16)
	SetDefault(&neg, 16)
	SetDefault(&set, 16)
	d := time.Duration(0)
	SetDefault(&d, time.Second)
	if n != 16 || neg != 16 || set != 7 || d != time.Second {
		t.Fatalf("got %d, %d, %d, %s; want 16, 16, 7 (kept), 1s", n, neg, set, d)
	}
}

func TestEveryRunsUntilStopped(t *testing.T) {
	stop, done, ticks := make(chan struct{}), make(chan struct{}), make(chan struct{}, 3)
	go func() {
		defer close(done)
		Every(stop, time.Millisecond, func() {
			select {
			case ticks <- struct{}{}:
			default:
			}
		})
	}()
	for range 3 {
		<-ticks
	}
	close(stop)
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Every did not return once stop was closed")
	}
}
