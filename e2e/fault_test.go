package e2e

import (
	"context"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	"github.com/coder/websocket/wsjson"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"parley/internal/testenv"
)

// The fault tests (fault_*_test.go) break a backend under a running chat and check
// what the two people see: acks keep coming, every message reaches both screens once,
// in order, and no connection is closed. This file holds what they share: a Redis
// server of the test's own (to freeze or kill without touching the stack's), a
// toxiproxy proxy run in this process, and a screen that timestamps every frame.

// redisServer is a redis-server process owned by one test, on a free 127.0.0.1 port.
type redisServer struct {
	t      *testing.T
	bin    string
	addr   string
	mu     sync.Mutex
	cmd    *exec.Cmd
	done   chan struct{}
	frozen bool
}

// startRedis starts a private, memory-only redis-server. The stack's Redis on 6379 is
// shared by every test and every developer shell; freezing it would break them all.
func startRedis(t *testing.T) *redisServer {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		if testenv.InCI() {
			t.Fatalf("redis-server is required under CI=true (scripts/stack.sh installs it): %v", err)
		}
		t.Skipf("SKIP (backend missing): no redis-server on PATH: %v", err)
	}
	r := &redisServer{t: t, bin: bin, addr: freeAddr(t)}
	r.start()
	t.Cleanup(r.Kill)
	return r
}

// URL is the redis:// URL of the server, for PARLEY_REDIS_URL.
func (r *redisServer) URL() string { return "redis://" + r.addr + "/0" }

// start runs redis-server on r.addr and waits until it answers PING.
func (r *redisServer) start() {
	r.t.Helper()
	_, port, _ := net.SplitHostPort(r.addr)
	cmd := exec.Command(r.bin, "--bind", "127.0.0.1", "--port", port, "--save", "",
		"--appendonly", "no", "--dir", r.t.TempDir(), "--daemonize", "no")
	if err := cmd.Start(); err != nil {
		r.t.Fatalf("starting redis-server: %v", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	r.mu.Lock()
	r.cmd, r.done, r.frozen = cmd, done, false
	r.mu.Unlock()
	rdb := redis.NewClient(&redis.Options{Addr: r.addr, DialTimeout: 200 * time.Millisecond})
	defer rdb.Close()
	testenv.Eventually(r.t, 10*time.Second, func() bool {
		return rdb.Ping(context.Background()).Err() == nil
	}, "redis-server on "+r.addr+" to answer PING")
}

// Freeze stops the process (SIGSTOP): its sockets stay open and nothing answers, as in
// a network partition or a stalled host.
func (r *redisServer) Freeze() { r.signal(syscall.SIGSTOP, true) }

// Thaw resumes a frozen server (SIGCONT).
func (r *redisServer) Thaw() { r.signal(syscall.SIGCONT, false) }

func (r *redisServer) signal(sig syscall.Signal, frozen bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.cmd.Process.Signal(sig); err != nil {
		r.t.Fatalf("redis-server: %v: %v", sig, err)
	}
	r.frozen = frozen
}

// Kill ends the server (SIGKILL) and waits for it; safe to call more than once.
func (r *redisServer) Kill() {
	r.mu.Lock()
	cmd, done, frozen := r.cmd, r.done, r.frozen
	r.mu.Unlock()
	if frozen {
		_ = cmd.Process.Signal(syscall.SIGCONT)
	}
	_ = cmd.Process.Kill()
	<-done
}

// Restart starts a fresh server on the same port (empty: it kept nothing on disk).
func (r *redisServer) Restart() { r.start() }

// toxicProxy is a toxiproxy proxy, run inside the test process, between Parley and one
// backend; toxics added to it slow, stall or reset the connections through it.
type toxicProxy struct {
	t     *testing.T
	proxy *toxiproxy.Proxy
}

// newToxicProxy listens on a free 127.0.0.1 port and forwards to upstream (host:port).
func newToxicProxy(t *testing.T, name, upstream string) *toxicProxy {
	t.Helper()
	server := toxiproxy.NewServer(toxiproxy.NewMetricsContainer(nil), zerolog.Nop())
	p := toxiproxy.NewProxy(server, name, "127.0.0.1:0", upstream)
	if err := p.Start(); err != nil {
		t.Fatalf("toxiproxy %s: %v", name, err)
	}
	t.Cleanup(p.Stop)
	return &toxicProxy{t: t, proxy: p}
}

// Addr is where Parley should connect instead of the backend.
func (p *toxicProxy) Addr() string { return p.proxy.Listen }

// Add adds a toxic by its JSON form, e.g.
// {"name":"slow","type":"latency","attributes":{"latency":200}} (downstream unless
// "stream":"upstream" says otherwise).
func (p *toxicProxy) Add(toxicJSON string) {
	p.t.Helper()
	if _, err := p.proxy.Toxics.AddToxicJson(strings.NewReader(toxicJSON)); err != nil {
		p.t.Fatalf("adding toxic %s: %v", toxicJSON, err)
	}
}

// Remove removes the toxic of that name.
func (p *toxicProxy) Remove(name string) {
	p.t.Helper()
	if err := p.proxy.Toxics.RemoveToxic(context.Background(), name); err != nil {
		p.t.Fatalf("removing toxic %s: %v", name, err)
	}
}

// screen is what one person's connection showed, each frame with the time it arrived.
// It reads the connection on its own goroutine, so senders never wait for the test.
type screen struct {
	who      string
	mu       sync.Mutex
	msgs     []frame              // message frames, in arrival order
	seenAt   map[string]time.Time // client id → when its message frame arrived
	ackAt    map[string]time.Time // client id → when its ack arrived
	acks     map[string]int64     // client id → acked seq
	online   map[string]bool      // email → last presence state shown
	degraded bool                 // a presence frame said presence cannot be read
	endedBy  string               // who ended the chat, once an ended frame said so
	errors   []frame
	closed   error // why the connection ended, once it has
	ended    chan struct{}
}

// watch starts reading c's frames into a screen.
func watch(who string, c *conn) *screen {
	s := &screen{who: who, seenAt: map[string]time.Time{}, ackAt: map[string]time.Time{},
		acks: map[string]int64{}, online: map[string]bool{}, ended: make(chan struct{})}
	held := c.held
	c.held = nil
	go func() {
		for _, f := range held {
			s.add(f, time.Now())
		}
		for f := range c.frames {
			s.add(f, time.Now())
		}
		err := <-c.closed
		c.closed <- err
		s.mu.Lock()
		s.closed = err
		s.mu.Unlock()
		close(s.ended)
	}()
	return s
}

func (s *screen) add(f frame, at time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch f.Type {
	case "message":
		s.msgs = append(s.msgs, f)
		if _, dup := s.seenAt[f.ID]; !dup {
			s.seenAt[f.ID] = at
		}
	case "ack":
		if _, dup := s.ackAt[f.ID]; !dup {
			s.ackAt[f.ID] = at
		}
		s.acks[f.ID] = f.Seq
	case "presence":
		s.online[f.Email] = f.Online
		s.degraded = s.degraded || f.Degraded != ""
	case "ended":
		s.endedBy = f.By
	case "error":
		s.errors = append(s.errors, f)
	}
}

// waitUntil waits for cond (called under the screen's lock), failing the test after
// timeout, or at once if the connection closes or an error frame arrives.
func (s *screen) waitUntil(t *testing.T, what string, timeout time.Duration, cond func(*screen) bool) {
	t.Helper()
	testenv.Eventually(t, timeout, func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		switch {
		case cond(s):
			return true
		case len(s.errors) > 0:
			t.Fatalf("%s got error frames while waiting for %s: %+v", s.who, what, s.errors)
		case s.closed != nil:
			t.Fatalf("%s's connection closed while waiting for %s (%d messages, %d acks): %v", s.who, what, len(s.msgs), len(s.acks), s.closed)
		}
		return false
	}, fmt.Sprintf("%s: %s", s.who, what))
}

// open fails the test if the connection has closed or an error frame arrived.
func (s *screen) open(t *testing.T) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed != nil {
		t.Fatalf("%s's connection was closed: %v", s.who, s.closed)
	}
	if len(s.errors) > 0 {
		t.Fatalf("%s got error frames: %+v", s.who, s.errors)
	}
}

// messages returns a copy of the message frames received so far.
func (s *screen) messages() []frame {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.msgs)
}

// ackTimes returns when each ack arrived, by client id.
func (s *screen) ackTimes() map[string]time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return maps.Clone(s.ackAt)
}

// seenTimes returns when each message frame first arrived, by client id.
func (s *screen) seenTimes() map[string]time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return maps.Clone(s.seenAt)
}

// sendFrame writes one frame as JSON; for connections handed to a screen, whose
// frames the helpers that read replies (say, next) must not take.
func (c *conn) sendFrame(v any) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return wsjson.Write(ctx, c.ws, v)
}

// sent is when each message of a paced sender was written, by client id.
type sent struct {
	mu sync.Mutex
	at map[string]time.Time
}

// times returns a copy of the send times so far.
func (sn *sent) times() map[string]time.Time {
	sn.mu.Lock()
	defer sn.mu.Unlock()
	return maps.Clone(sn.at)
}

// pace sends a message with id prefix-i every gap until stop is closed (or n messages,
// when n > 0), like a person typing steadily; it returns once the last was written.
func pace(t *testing.T, c *conn, prefix string, gap time.Duration, n int, stop <-chan struct{}) (*sent, <-chan error) {
	sn := &sent{at: map[string]time.Time{}}
	errc := make(chan error, 1)
	go func() {
		tick := time.NewTicker(gap)
		defer tick.Stop()
		for i := 0; n <= 0 || i < n; i++ {
			id := prefix + "-" + strconv.Itoa(i)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			at := time.Now()
			err := wsjson.Write(ctx, c.ws, map[string]string{"type": "send", "id": id, "text": fmt.Sprintf("%s says %d", prefix, i)})
			cancel()
			if err != nil {
				errc <- fmt.Errorf("writing %s: %w", id, err)
				return
			}
			sn.mu.Lock()
			sn.at[id] = at
			sn.mu.Unlock()
			select {
			case <-stop:
				errc <- nil
				return
			case <-tick.C:
			}
		}
		errc <- nil
	}()
	return sn, errc
}

// delays returns, sorted, how long after sending (sentAt) each message arrived
// (arrived); ids that never arrived are left out.
func delays(sentAt, arrived map[string]time.Time) []time.Duration {
	var all []time.Duration
	for id, at := range sentAt {
		if got, ok := arrived[id]; ok {
			all = append(all, got.Sub(at))
		}
	}
	slices.Sort(all)
	return all
}

// percentile returns the p-th percentile (0..1) of sorted durations.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[min(len(sorted)-1, int(p*float64(len(sorted))))]
}

// timedGet fetches url and returns status, body and how long the answer took.
func timedGet(t *testing.T, url string, timeout time.Duration) (int, string, time.Duration) {
	t.Helper()
	client := &http.Client{Timeout: timeout}
	start := time.Now()
	resp, err := client.Get(url)
	if err != nil {
		return 0, err.Error(), time.Since(start)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body), time.Since(start)
}

// metricValue reads one sample (name with its labels, as /metrics prints it) from a
// server's /metrics; -1 when absent.
func metricValue(t *testing.T, s *server, sample string) float64 {
	t.Helper()
	_, body, _ := timedGet(t, s.URL+"/metrics", 5*time.Second)
	for _, line := range strings.Split(body, "\n") {
		if v, ok := strings.CutPrefix(line, sample+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err == nil {
				return f
			}
		}
	}
	return -1
}

// pair is two people in one chat, each connection watched: ann (the host) through
// annSrv, bob through bobSrv (the same server, or another replica).
type pair struct {
	ann, bob *person
	a, b     *conn
	as, bs   *screen
	session  string
}

// enterPair signs both people in and opens their connections; call watch before talk.
func enterPair(t *testing.T, annSrv, bobSrv *server, room string) *pair {
	t.Helper()
	ann := join(t, annSrv.URL, room, testenv.UniqueName(t, "ann")+"@example.org")
	bob := join(t, annSrv.URL, room, testenv.UniqueName(t, "bob")+"@example.org").on(bobSrv)
	a, aw := ann.mustDial("")
	b, bw := bob.mustDial("")
	if bw.Session != aw.Session {
		t.Fatalf("ann and bob are in different chats: %s and %s", aw.Session, bw.Session)
	}
	return &pair{ann: ann, bob: bob, a: a, b: b, session: aw.Session}
}

// watch hands both connections to screens (see watch); after it, read them only
// through the screens.
func (p *pair) watch() *pair {
	p.as, p.bs = watch("ann", p.a), watch("bob", p.b)
	return p
}

// talk makes both people send one message every gap until stop is closed; wait
// returns once both have written their last, with what each sent.
func (p *pair) talk(t *testing.T, gap time.Duration, stop <-chan struct{}) (wait func() (ann, bob map[string]time.Time)) {
	annSent, annErr := pace(t, p.a, "a", gap, 0, stop)
	bobSent, bobErr := pace(t, p.b, "b", gap, 0, stop)
	return func() (map[string]time.Time, map[string]time.Time) {
		t.Helper()
		for who, errc := range map[string]<-chan error{"ann": annErr, "bob": bobErr} {
			if err := <-errc; err != nil {
				t.Fatalf("%s could not send: %v", who, err)
			}
		}
		return annSent.times(), bobSent.times()
	}
}

// settle waits until both screens show every message both sent and each sender has
// every ack, then checks that each screen shows seq 1..n exactly once, in order, that
// the acks name those seqs, and that both connections are still open.
func (p *pair) settle(t *testing.T, annSent, bobSent map[string]time.Time, timeout time.Duration) {
	t.Helper()
	total := len(annSent) + len(bobSent)
	for _, side := range []struct {
		s    *screen
		mine map[string]time.Time
	}{{p.as, annSent}, {p.bs, bobSent}} {
		side.s.waitUntil(t, fmt.Sprintf("all %d messages and %d acks", total, len(side.mine)), timeout, func(s *screen) bool {
			return len(s.msgs) >= total && len(s.acks) >= len(side.mine)
		})
	}
	annMsgs, bobMsgs := p.as.messages(), p.bs.messages()
	checkOnce(t, "ann", annMsgs, 1, int64(total))
	checkOnce(t, "bob", bobMsgs, 1, int64(total))
	for i, m := range annMsgs {
		if bobMsgs[i].ID != m.ID {
			t.Fatalf("seq %d is %s on ann's screen and %s on bob's", m.Seq, m.ID, bobMsgs[i].ID)
		}
		owner := p.as
		if strings.HasPrefix(m.ID, "b-") {
			owner = p.bs
		}
		owner.mu.Lock()
		acked := owner.acks[m.ID]
		owner.mu.Unlock()
		if acked != m.Seq {
			t.Fatalf("%s was acked at seq %d but shown at seq %d", m.ID, acked, m.Seq)
		}
	}
	p.as.open(t)
	p.bs.open(t)
}
