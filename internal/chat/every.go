package chat

import (
	"runtime"
	"time"
)

// Every calls fn every interval until stop is closed: the loop of Parley's background
// checks (the hub's broker health and presence watch, SQLite's WAL checkpoints).
func Every(stop <-chan struct{}, interval time.Duration, fn func()) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			fn()
		}
	}
}

// Gather lets the goroutines already running hand in their work before a batch is
// taken (the SQLite writer's group commit, the send queues' flushers): it yields the
// processor while each yield brought more (waiting grew), at most max times. Under
// load the batch grows and one commit or write serves more; with nothing else to run
// a yield returns at once and nothing waits.
func Gather(waiting func() int, max int) {
	n := waiting()
	for range max {
		runtime.Gosched()
		m := waiting()
		if m == n {
			return
		}
		n = m
	}
}
