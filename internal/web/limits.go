package web

import (
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/gobwas/ws"
	"golang.org/x/time/rate"

	"parley/internal/chat"
	"parley/internal/metrics"
	"parley/internal/wire"
)

// Limits bound what one address, client or person can ask of this replica, so that
// nobody can flood someone's inbox with sign-in emails, guess at the join form, or
// hold thousands of connections. Zero values get the defaults below; a negative value
// turns that limit off. Limits are per replica: behind a load balancer of n replicas a
// client gets up to n times as much.
type Limits struct {
	SignInsPerEmail int // sign-in emails per address per hour (5)
	SignInsPerIP    int // sign-in emails per client IP per hour (20)
	JoinsPerMinute  int // join form posts per client IP per minute (30; email-link sign-in only)
	ConnsPerPerson  int // open WebSockets per signed-in email (10)
}

// Default limits.
const (
	DefaultSignInsPerEmail = 5
	DefaultSignInsPerIP    = 20
	DefaultJoinsPerMinute  = 30
	DefaultConnsPerPerson  = 10
)

// limiters are the Limits in force.
type limiters struct {
	signInsPerEmail *keyedLimiter
	signInsPerIP    *keyedLimiter
	joins           *keyedLimiter
	conns           *connCounter
}

// newLimiters builds the limiters of l, reading time from now.
func newLimiters(l Limits, now func() time.Time) limiters {
	return limiters{
		signInsPerEmail: newKeyedLimiter(pick(l.SignInsPerEmail, DefaultSignInsPerEmail), time.Hour, now),
		signInsPerIP:    newKeyedLimiter(pick(l.SignInsPerIP, DefaultSignInsPerIP), time.Hour, now),
		joins:           newKeyedLimiter(pick(l.JoinsPerMinute, DefaultJoinsPerMinute), time.Minute, now),
		conns:           newConnCounter(pick(l.ConnsPerPerson, DefaultConnsPerPerson)),
	}
}

// pick returns v, or def when v is zero; negative means off (returned as is).
func pick(v, def int) int {
	if v == 0 {
		return def
	}
	return v
}

// keyedLimiter allows n events per period per key (an email, an IP), in bursts of up
// to n: a token bucket per key. A nil keyedLimiter allows everything.
type keyedLimiter struct {
	limit rate.Limit
	burst int
	now   func() time.Time

	mu      sync.Mutex
	buckets map[string]*rate.Limiter
	sweepAt int // map size at which full (idle) buckets are dropped
}

// minSweep is the map size below which idle buckets are simply kept.
const minSweep = 1024

func newKeyedLimiter(n int, per time.Duration, now func() time.Time) *keyedLimiter {
	if n < 0 {
		return nil
	}
	return &keyedLimiter{limit: rate.Every(per / time.Duration(n)), burst: n, now: now,
		buckets: make(map[string]*rate.Limiter), sweepAt: minSweep}
}

// allow takes one event from key's bucket, reporting whether there was one.
func (k *keyedLimiter) allow(key string) bool {
	if k == nil {
		return true
	}
	now := k.now()
	k.mu.Lock()
	defer k.mu.Unlock()
	b := k.buckets[key]
	if b == nil {
		if len(k.buckets) >= k.sweepAt {
			k.sweep(now)
		}
		b = rate.NewLimiter(k.limit, k.burst)
		k.buckets[key] = b
	}
	return b.AllowN(now, 1)
}

// retryIn returns how long until key's bucket holds an event again (0 when it does),
// so a refusal can say truthfully when to try again.
func (k *keyedLimiter) retryIn(key string) time.Duration {
	if k == nil {
		return 0
	}
	now := k.now()
	k.mu.Lock()
	defer k.mu.Unlock()
	b := k.buckets[key]
	if b == nil {
		return 0
	}
	missing := 1 - b.TokensAt(now)
	if missing <= 0 {
		return 0
	}
	return time.Duration(missing / float64(k.limit) * float64(time.Second))
}

// sweep drops the buckets that have refilled, which are the same as new ones, so
// memory follows the keys active in the last period, not every key ever seen.
func (k *keyedLimiter) sweep(now time.Time) {
	for key, b := range k.buckets {
		if b.TokensAt(now) >= float64(k.burst) {
			delete(k.buckets, key)
		}
	}
	k.sweepAt = max(minSweep, 2*len(k.buckets))
}

// connCounter counts open connections per person. A nil counter allows everything.
type connCounter struct {
	max  int
	mu   sync.Mutex
	open map[string]int
}

func newConnCounter(n int) *connCounter {
	if n < 0 {
		return nil
	}
	return &connCounter{max: n, open: make(map[string]int)}
}

// acquire counts one more connection of key, unless key has max open already.
func (c *connCounter) acquire(key string) bool {
	if c == nil {
		return true
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.open[key] >= c.max {
		return false
	}
	c.open[key]++
	return true
}

// release counts one connection of key closed.
func (c *connCounter) release(key string) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.open[key]--; c.open[key] <= 0 {
		delete(c.open, key)
	}
}

// limitJoins refuses join form posts beyond the per-client limit, with a 429 page.
// Under trust sign-in it does nothing: the typed email is believed anyway, and
// benchmarks sign in thousands of people from one address.
func (s *Server) limitJoins(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.emailLink() && !s.limits.joins.allow(s.clientIP(r)) {
			s.metrics.Refused(metrics.ReasonJoinLimited)
			s.renderError(w, r, chat.Errorf(chat.ERateLimited, "Too many attempts to join from your network. Please wait a minute and try again."))
			return
		}
		next.ServeHTTP(w, r)
	})
}

// limitConns refuses a person's WebSocket beyond ConnsPerPerson open ones on this
// replica. The refusal is a WebSocket that says rate_limited in an error frame and
// closes with 1008, since a browser page cannot read an HTTP status of a handshake.
// Requests without a valid identity or from a foreign Origin pass through to the
// handler, which refuses them itself.
func (s *Server) limitConns(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		email, ok := s.currentEmail(r)
		if !ok || !s.originAllowed(r) || chat.ValidateRoom(r.PathValue("room")) != nil {
			next.ServeHTTP(w, r)
			return
		}
		if !s.limits.conns.acquire(email) {
			s.metrics.Refused(metrics.ReasonConnLimited)
			s.refuseWS(w, r, chat.Errorf(chat.ERateLimited, "You have too many chat windows open. Close some and reload this page."))
			return
		}
		// The WebSocket handler takes the slot over and gives it back when the
		// connection ends, which is after the handler returns (serveWS).
		r, slot := withConnSlot(r, func() { s.limits.conns.release(email) })
		defer slot.done()
		next.ServeHTTP(w, r)
	})
}

// refuseWS accepts a WebSocket only to tell it err and close it (1008).
func (s *Server) refuseWS(w http.ResponseWriter, r *http.Request, err error) {
	conn, uerr := upgrade(w, r, s.cfg.ReadLimit)
	if uerr != nil {
		return
	}
	_ = conn.writeText(wire.Error(err, ""))
	_ = conn.writeClose(ws.StatusPolicyViolation, "too many connections")
	conn.linger(closeGrace)
	conn.drop()
}

// parseProxies reads Config.TrustedProxies: IPs or CIDR prefixes.
func parseProxies(list []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, p := range list {
		p = strings.TrimSpace(p)
		if !strings.Contains(p, "/") {
			a, err := netip.ParseAddr(p)
			if err != nil {
				return nil, chat.Errorf(chat.EInvalid, "trusted proxy %q is not an IP address or CIDR prefix", p)
			}
			out = append(out, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
			continue
		}
		pf, err := netip.ParsePrefix(p)
		if err != nil {
			return nil, chat.Errorf(chat.EInvalid, "trusted proxy %q is not an IP address or CIDR prefix", p)
		}
		out = append(out, pf.Masked())
	}
	return out, nil
}

// clientIP is the address limits are keyed by: the TCP peer, or, when the peer is a
// trusted proxy, the nearest address in X-Forwarded-For that is not one. Addresses a
// client writes into the header itself lie beyond the first untrusted hop and are
// never believed. IPv6 clients are keyed by their /64, which one user usually holds.
func (s *Server) clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	addr, err := netip.ParseAddr(host)
	if err != nil {
		return host
	}
	addr = addr.Unmap()
	if s.trusted(addr) {
		hops := strings.Split(strings.Join(r.Header.Values("X-Forwarded-For"), ","), ",")
		for i := len(hops) - 1; i >= 0; i-- {
			a, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
			if err != nil {
				break
			}
			addr = a.Unmap()
			if !s.trusted(addr) {
				break
			}
		}
	}
	if addr.Is6() {
		p, _ := addr.Prefix(64)
		return p.String()
	}
	return addr.String()
}

func (s *Server) trusted(a netip.Addr) bool {
	for _, p := range s.proxies {
		if p.Contains(a) {
			return true
		}
	}
	return false
}
