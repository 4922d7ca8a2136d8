package chat

import "time"

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
