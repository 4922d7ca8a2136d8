package bench

import (
	"cmp"
	"context"
	"encoding/csv"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
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
	keep   bool // every sample too, for the latency log
	shards [histShards]struct {
		mu      sync.Mutex
		h       *hdrhistogram.Histogram
		samples []latencySample
	}
}

// latencySample is one measured message: when it was sent, its latency and its client.
type latencySample struct {
	sent, us int64 // unix µs, µs
	client   int32
}

func newLatencies() *latencies {
	l := &latencies{}
	for i := range l.shards {
		l.shards[i].h = hdrhistogram.New(histMin, histMax, histDigits)
	}
	return l
}

// record notes the latency d of a message client sent at sent.
func (l *latencies) record(client int, sent time.Time, d time.Duration) {
	s := &l.shards[client%histShards]
	us := max(int64(d/time.Microsecond), histMin)
	s.mu.Lock()
	_ = s.h.RecordValue(min(us, histMax))
	if l.keep {
		s.samples = append(s.samples, latencySample{sent: sent.UnixMicro(), us: us, client: int32(client)})
	}
	s.mu.Unlock()
}

// writeFile writes the kept samples to path as CSV, in the order they were sent.
func (l *latencies) writeFile(path string) error {
	var all []latencySample
	for i := range l.shards {
		l.shards[i].mu.Lock()
		all = append(all, l.shards[i].samples...)
		l.shards[i].mu.Unlock()
	}
	slices.SortFunc(all, func(a, b latencySample) int { return cmp.Compare(a.sent, b.sent) })
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := csv.NewWriter(f)
	_ = w.Write([]string{"sent_unix_us", "latency_us", "client"})
	for _, s := range all {
		_ = w.Write([]string{strconv.FormatInt(s.sent, 10), strconv.FormatInt(s.us, 10), strconv.Itoa(int(s.client))})
	}
	w.Flush()
	if err := w.Error(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
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

// loop is the closed loop every client of a chat runs: send message n, wait for it to
// come back through the room, record the latency if it was sent after measureFrom,
// send n+1; until stop is set.
type loop struct {
	text        string
	measureFrom time.Time
	resendAfter time.Duration
	lat         *latencies
	stop        atomic.Bool
}

// runChat is the goroutine of client c in a chat: the closed loop until l.stop, then
// sending.Done() and reading (for the drain) until the client is closed or aborted.
func (l *loop) runChat(ctx context.Context, c *client, shard int, sending *sync.WaitGroup) {
	l.run(ctx, c, shard)
	sending.Done()
	c.readUntilClosed(ctx)
}

func (l *loop) run(ctx context.Context, c *client, shard int) {
	for n := 1; !l.stop.Load(); n++ {
		c.sent = n
		first := time.Now()
		c.stats.sends.Add(1)
		res, at := l.deliver(ctx, c, n, first)
		switch res {
		case arrived:
			if !first.Before(l.measureFrom) {
				l.lat.record(shard, first, at.Sub(first))
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

// deliver sends message n and reads until it comes back, recording every frame on the
// way, resending the same id (which the server stores only once) after a rate limit, a
// failed write or a timeout. A connection dropped while waiting is re-opened with
// ?after=, which replays the message if the server stored it.
func (l *loop) deliver(ctx context.Context, c *client, n int, first time.Time) (outcome, time.Time) {
	resendAt := first.Add(l.resendAfter)
	send := func() bool { return l.write(ctx, c, n) && c.armDeadline(resendAt) }
	if !send() {
		return aborted, time.Time{}
	}
	for {
		ev, err := c.next()
		if err != nil {
			switch {
			case c.stopped() || ctx.Err() != nil:
				return aborted, time.Time{}
			case isTimeout(err):
				if now := time.Now(); !now.Before(resendAt) {
					c.cnt.addError("timeout")
					resendAt = now.Add(l.resendAfter)
					if !l.write(ctx, c, n) {
						return aborted, time.Time{}
					}
				}
				if !c.setDeadline(resendAt) {
					return aborted, time.Time{}
				}
			default:
				if !c.reconnect(ctx) || !c.armDeadline(resendAt) {
					return aborted, time.Time{}
				}
			}
			continue
		}
		switch {
		case ev.own == n:
			return arrived, time.Now()
		case !ev.failed:
		case ev.code == "rate_limited":
			if !sleepCtx(ctx, retryBackoff) || c.stopped() || !send() {
				return aborted, time.Time{}
			}
		case fatalCodes[ev.code]:
			return fatal, time.Time{}
		default:
			return refused, time.Time{}
		}
	}
}

// write sends the frame of message n, on a new connection if the current one fails
// (the caller arms the read deadline again). It reports false when the run ended first.
func (l *loop) write(ctx context.Context, c *client, n int) bool {
	for {
		buf := appendSend(c.ws.payloadBuf(), c, n, l.text)
		err := c.ws.writeBuf(opText, buf)
		if err == nil {
			return true
		}
		if c.stopped() || ctx.Err() != nil {
			return false
		}
		c.cnt.addError("write")
		if !c.reconnect(ctx) {
			return false
		}
	}
}
