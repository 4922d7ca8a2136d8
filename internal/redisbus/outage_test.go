package redisbus

import (
	"context"
	"net"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"parley/internal/chat"
	"parley/internal/testenv"
)

// proxy is a TCP relay between a bus and Redis that a test can break in the ways a
// network does: cut every connection, refuse new ones, or freeze the existing ones
// (a half-open connection: writes vanish, nothing comes back, no error).
type proxy struct {
	ln     net.Listener
	target string
	refuse atomic.Bool

	mu    sync.Mutex
	pairs []*pair
}

type pair struct {
	client, server net.Conn
	frozen         atomic.Bool
	done           chan struct{}
	once           sync.Once
}

func (p *pair) close() {
	p.once.Do(func() {
		close(p.done)
		_ = p.client.Close()
		_ = p.server.Close()
	})
}

func newProxy(t *testing.T, target string) *proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{ln: ln, target: target}
	go p.accept()
	t.Cleanup(func() {
		_ = ln.Close()
		p.cut()
	})
	return p
}

// url returns redisURL with its host replaced by the proxy's.
func (p *proxy) url(t *testing.T, redisURL string) string {
	u, err := url.Parse(redisURL)
	if err != nil {
		t.Fatal(err)
	}
	u.Host = p.ln.Addr().String()
	return u.String()
}

func (p *proxy) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		if p.refuse.Load() {
			_ = c.Close()
			continue
		}
		s, err := net.Dial("tcp", p.target)
		if err != nil {
			_ = c.Close()
			continue
		}
		pr := &pair{client: c, server: s, done: make(chan struct{})}
		p.mu.Lock()
		p.pairs = append(p.pairs, pr)
		p.mu.Unlock()
		go relay(pr, c, s)
		go relay(pr, s, c)
	}
}

// relay copies from src to dst until either side fails; a frozen pair swallows what
// it reads and sends nothing.
func relay(pr *pair, src, dst net.Conn) {
	defer pr.close()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if err != nil {
			return
		}
		if pr.frozen.Load() {
			continue
		}
		if _, err := dst.Write(buf[:n]); err != nil {
			return
		}
	}
}

// cut closes every relayed connection.
func (p *proxy) cut() {
	p.mu.Lock()
	pairs := p.pairs
	p.pairs = nil
	p.mu.Unlock()
	for _, pr := range pairs {
		pr.close()
	}
}

// freeze makes every current connection silent without closing it.
func (p *proxy) freeze() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, pr := range p.pairs {
		pr.frozen.Store(true)
	}
}

// proxiedBus opens a bus that reaches Redis through a new proxy.
func (env *testEnv) proxiedBus(t *testing.T, name string) (*Bus, *proxy) {
	t.Helper()
	u, err := url.Parse(env.url)
	if err != nil {
		t.Fatal(err)
	}
	p := newProxy(t, u.Host)
	b, err := New(context.Background(), Options{
		URL: p.url(t, env.url), Prefix: env.prefix, ReplicaID: name + "-" + randomID(),
		HealthInterval: 100 * time.Millisecond,
	})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b, p
}

// TestSilentConnection: a subscriber connection that goes quiet without an error is
// detected by the health pings, replaced, and reported through OnReconnect.
func TestSilentConnection(t *testing.T) {
	env := newTestEnv(t)
	a, p := env.proxiedBus(t, "a")
	b := env.bus(t, "b", 0)
	var reconnects atomic.Int32
	a.OnReconnect(func() { reconnects.Add(1) })
	r, _ := subscribe(t, a, "s1")
	p.freeze()
	testenv.Eventually(t, 10*time.Second, func() bool { return reconnects.Load() == 1 }, "OnReconnect after the connection went silent")
	if err := b.Publish(context.Background(), messageEvent("s1", 1)); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 10*time.Second, func() bool { return r.hasSeq(1) }, "delivery on the new connection")
}

// TestOutage: while Redis cannot be reached Ping fails (so /readyz takes the replica
// out); when it is back the bus resubscribes, calls OnReconnect and delivers again.
func TestOutage(t *testing.T) {
	env := newTestEnv(t)
	a, p := env.proxiedBus(t, "a")
	b := env.bus(t, "b", 0)
	var reconnects atomic.Int32
	a.OnReconnect(func() { reconnects.Add(1) })
	r, _ := subscribe(t, a, "s1")
	ping := func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		defer cancel()
		return a.Ping(ctx)
	}
	p.refuse.Store(true)
	p.cut()
	testenv.Eventually(t, 10*time.Second, func() bool { return ping() != nil }, "Ping to fail during the outage")
	if err := b.Publish(context.Background(), messageEvent("s1", 1)); err != nil {
		t.Fatal(err) // lost for a: the hub catches up from the store
	}
	if _, err := a.Subscribe(context.Background(), "s2", func(chat.Event) {}); err == nil {
		t.Fatal("Subscribe succeeded while Redis was unreachable")
	}
	p.refuse.Store(false)
	testenv.Eventually(t, 10*time.Second, func() bool { return reconnects.Load() == 1 }, "OnReconnect after the outage")
	testenv.Eventually(t, 10*time.Second, func() bool { return ping() == nil }, "Ping to succeed again")
	if err := b.Publish(context.Background(), messageEvent("s1", 2)); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 10*time.Second, func() bool { return r.hasSeq(2) }, "delivery after the outage")
	if got := len(r.snapshot()); got != 1 {
		t.Fatalf("got %d events, want only seq 2 (seq 1 was published during the outage)", got)
	}
	ch := a.channel("s2")
	if n := env.admin.PubSubNumSub(context.Background(), ch).Val()[ch]; n != 0 {
		t.Fatalf("the failed Subscribe left %d Redis subscriptions to s2", n)
	}
}
