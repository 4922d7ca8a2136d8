package bench

import (
	"context"
	"sync"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	"github.com/coder/websocket"
)

// Histogram range: 1 µs to 60 s at 3 significant digits.
const (
	histMin    = 1
	histMax    = int64(60 * time.Second / time.Microsecond)
	histDigits = 3
	histShards = 16
)

// fatalCodes are the refusals after which a client stops sending.
var fatalCodes = map[string]bool{"room_full": true, "chat_ended": true, "not_allowed": true}

// latencies is a sharded HdrHistogram in microseconds: one full-precision histogram
// per client would cost hundreds of KB each, one shared lock would be contended.
type latencies struct {
	shards [histShards]struct {
		mu sync.Mutex
		h  *hdrhistogram.Histogram
	}
}

func newLatencies() *latencies {
	l := &latencies{}
	for i := range l.shards {
		l.shards[i].h = hdrhistogram.New(histMin, histMax, histDigits)
	}
	return l
}

func (l *latencies) record(shard int, d time.Duration) {
	s := &l.shards[shard%histShards]
	us := max(int64(d/time.Microsecond), histMin)
	s.mu.Lock()
	_ = s.h.RecordValue(min(us, histMax))
	s.mu.Unlock()
}

// merged returns one histogram of every shard.
func (l *latencies) merged() *hdrhistogram.Histogram {
	h := hdrhistogram.New(histMin, histMax, histDigits)
	for i := range l.shards {
		l.shards[i].mu.Lock()
		h.Merge(l.shards[i].h)
		l.shards[i].mu.Unlock()
	}
	return h
}

// outcome is how one message ended for its sender.
type outcome int

const (
	arrived outcome = iota // came back to the sender
	refused                // an error frame refused it; move on
	fatal                  // the room no longer accepts this client's messages
	aborted                // the run ended first
)

// loop is the closed loop of one client: send message n, wait for it to come back
// through the room, record the latency if it was sent after measureFrom, send n+1;
// until stop is closed. ctx bounds the wait for the last message.
type loop struct {
	text        string
	measureFrom time.Time
	resendAfter time.Duration
	lat         *latencies
	stop        <-chan struct{}
}

func (l *loop) run(ctx context.Context, c *client, shard int) {
	var buf []byte
	for n := 1; ; n++ {
		select {
		case <-l.stop:
			return
		default:
		}
		c.sent = n
		first := time.Now()
		c.cnt.sends.Add(1)
		res, at := l.deliver(ctx, c, n, &buf)
		switch res {
		case arrived:
			if !first.Before(l.measureFrom) {
				l.lat.record(shard, at.Sub(first))
			}
		case refused:
			c.refused[n] = true
		case fatal:
			c.refused[n] = true
			return
		case aborted:
			return
		}
	}
}

// deliver sends message n and waits for it to come back, resending the same id (which
// the server stores only once) after a rate limit, a dropped connection or a timeout.
func (l *loop) deliver(ctx context.Context, c *client, n int, buf *[]byte) (outcome, time.Time) {
	id := c.idOf(n)
	if !l.write(ctx, c, id, buf) {
		return aborted, time.Time{}
	}
	timer := time.NewTimer(l.resendAfter)
	defer timer.Stop()
	for {
		select {
		case a := <-c.own:
			if a.n == n {
				return arrived, a.at
			}
		case code := <-c.errs:
			switch {
			case code == "rate_limited":
				if !sleepCtx(ctx, retryBackoff) || !l.write(ctx, c, id, buf) {
					return aborted, time.Time{}
				}
			case fatalCodes[code]:
				return fatal, time.Time{}
			default:
				return refused, time.Time{}
			}
		case <-timer.C:
			c.cnt.addError("timeout")
			if !l.write(ctx, c, id, buf) {
				return aborted, time.Time{}
			}
			timer.Reset(l.resendAfter)
		case <-ctx.Done():
			return aborted, time.Time{}
		}
	}
}

// write sends the frame of id, retrying on the connection the reader has re-established
// if the current one fails. It reports false when ctx ended first.
func (l *loop) write(ctx context.Context, c *client, id string, buf *[]byte) bool {
	*buf = sendFrame((*buf)[:0], id, l.text)
	for {
		err := c.conn.Load().Write(ctx, websocket.MessageText, *buf)
		if err == nil {
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		c.cnt.addError("write")
		if !sleepCtx(ctx, retryBackoff) {
			return false
		}
	}
}
