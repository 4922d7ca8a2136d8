package room

import (
	"time"

	"parley/internal/chat"
	"parley/internal/wire"
)

// errRateLimited refuses a frame of a client that stayed over its rate for ThrottleMax.
var errRateLimited = chat.Errorf(chat.ERateLimited, "You are sending too fast; please slow down.")

// admit applies the connection's rate limit (RatePerSec, bursts of RateBurst) to one
// frame by making the reader wait until the limiter allows it: a client sending
// faster than its rate is slowed, not refused, since while the reader waits nothing
// is read from its socket and TCP pushes back. Only a client that has stayed over its
// rate for ThrottleMax without a pause (or whose rate is so low that one frame would
// wait longer) gets a rate_limited error frame with retry_after_ms, and its frame is
// dropped, unacked, to be resent. admit reports
// whether to go on with the frame; false too when the connection closed meanwhile;
// and the time (chat.Mono) to go on from: mono, or the time after a pause.
// Under the rate it costs one AllowN: no allocation, no timer, no clock read.
func (c *Client) admit(id string, mono int64) (int64, bool) {
	now := chat.MonoTime(mono)
	if c.limiter.AllowN(now, 1) {
		c.throttledSince = time.Time{}
		return mono, true
	}
	if c.throttledSince.IsZero() {
		c.throttledSince = now
	}
	r := c.limiter.ReserveN(now, 1)
	delay := r.DelayFrom(now)
	if !r.OK() || delay > c.r.o.ThrottleMax || now.Sub(c.throttledSince) >= c.r.o.ThrottleMax {
		r.CancelAt(now)
		c.throttledSince = time.Time{}
		c.countRefusal(errRateLimited)
		c.t.Reply(wire.ErrorRetry(errRateLimited, id, delay))
		return mono, false
	}
	c.r.o.Metrics.Throttled()
	if !c.pause(delay) {
		return mono, false
	}
	return chat.Mono(), true
}

// pause waits d, or until the connection closes (false).
func (c *Client) pause(d time.Duration) bool {
	if c.wait == nil {
		c.wait = time.NewTimer(d)
	} else {
		c.wait.Reset(d)
	}
	select {
	case <-c.wait.C:
		return true
	case <-c.ctx.Done():
		c.wait.Stop()
		return false
	}
}
