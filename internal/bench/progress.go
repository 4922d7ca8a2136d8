package bench

import (
	"fmt"
	"io"
	"os"
	"runtime/pprof"
	"sync"
	"time"
)

// progress prints one live line on stderr each second: phase, elapsed time, the last
// second's deliveries and sends, and the error count so far.
type progress struct {
	once sync.Once
	done chan struct{}
	wg   sync.WaitGroup
}

func newProgress(cnt *counters, w io.Writer, quiet bool, start, measureFrom, runEnd time.Time) *progress {
	p := &progress{done: make(chan struct{})}
	if quiet {
		return p
	}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		t := time.NewTicker(time.Second)
		defer t.Stop()
		t0 := cnt.totals()
		lastD, lastS, last := t0.deliveries, t0.sends, time.Now()
		for {
			select {
			case <-p.done:
				fmt.Fprint(w, "\r\033[K")
				return
			case now := <-t.C:
				t := cnt.totals()
				d, s := t.deliveries, t.sends
				secs := now.Sub(last).Seconds()
				fmt.Fprintf(w, "\r\033[K[%s %4.0fs] deliveries/s %9.0f  sends/s %8.0f  errors %d  reconnects %d",
					phase(now, measureFrom, runEnd), now.Sub(start).Seconds(),
					float64(d-lastD)/secs, float64(s-lastS)/secs, cnt.errorTotal(), cnt.reconnects.Load())
				lastD, lastS, last = d, s, now
			}
		}
	}()
	return p
}

func phase(now, measureFrom, runEnd time.Time) string {
	switch {
	case now.Before(measureFrom):
		return "warmup"
	case now.Before(runEnd):
		return "run"
	}
	return "drain"
}

// stop ends the progress line; it is safe to repeat.
func (p *progress) stop() {
	p.once.Do(func() { close(p.done) })
	p.wg.Wait()
}

// startCPUProfile profiles the load generator itself into path ("" does nothing), so
// its own cost on shared cores can be seen; the returned func stops it.
func startCPUProfile(path string) (func(), error) {
	if path == "" {
		return func() {}, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() { pprof.StopCPUProfile(); f.Close() }, nil
}
