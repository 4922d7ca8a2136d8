package cli

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"go.uber.org/goleak"

	"parley/internal/testenv"
)

// binary is the parley binary, built once for the tests that run it as operators do.
var binary string

func TestMain(m *testing.M) {
	var remove func()
	var err error
	binary, remove, err = testenv.BuildParley("../../cmd/parley")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	remove()
	if code == 0 {
		if err := goleak.Find(); err != nil { // a test left a goroutine running
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// lockedBuffer collects a process's output across goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// parleyEnv is a clean environment (no PARLEY_* from the caller's shell) with
// the given "NAME=value" settings.
func parleyEnv(vars ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PARLEY_") {
			env = append(env, kv)
		}
	}
	return append(env, vars...)
}

// runParley runs one parley command to its end and returns its stdout, stderr and error.
func runParley(t *testing.T, env []string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, args...)
	cmd.Env = env
	var out, errOut strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err = cmd.Run()
	return out.String(), errOut.String(), err
}

// served is a running `parley serve`.
type served struct {
	url  string
	addr string
	logs *lockedBuffer
}

// noKeepAlive is an HTTP client that holds no connection open between requests, so
// it never counts against PARLEY_MAX_CONNS, and follows no redirects.
var noKeepAlive = &http.Client{
	Transport:     &http.Transport{DisableKeepAlives: true},
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	Timeout:       10 * time.Second,
}

// serve starts `parley serve` on a free loopback port with trust sign-in, a fresh data
// folder and vars, waits until /healthz answers and stops it at the end of the test.
func serve(t *testing.T, vars ...string) *served {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	s := &served{url: "http://" + addr, addr: addr, logs: &lockedBuffer{}}
	cmd := exec.Command(binary, "serve")
	cmd.Env = parleyEnv(append([]string{"PARLEY_ADDR=" + addr, "PARLEY_DATA_DIR=" + t.TempDir(), "PARLEY_AUTH=trust"}, vars...)...)
	cmd.Stdout, cmd.Stderr = s.logs, s.logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
		if t.Failed() {
			t.Logf("parley serve output:\n%s", s.logs)
		}
	})
	for deadline := time.Now().Add(30 * time.Second); ; {
		select {
		case <-exited:
			t.Fatalf("parley serve exited:\n%s", s.logs)
		default:
		}
		if res, err := noKeepAlive.Get(s.url + "/healthz"); err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return s
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("parley serve not healthy within 30 s:\n%s", s.logs)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// join signs email in (trust sign-in) through the join form and returns the cookie.
func (s *served) join(t *testing.T, room, email string) *http.Cookie {
	t.Helper()
	res, err := noKeepAlive.PostForm(s.url+"/join", url.Values{"room": {room}, "email": {email}})
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	for _, c := range res.Cookies() {
		if c.Name == "parley_session" && c.Value != "" {
			return c
		}
	}
	t.Fatalf("join %s as %s: %d and no cookie", room, email, res.StatusCode)
	return nil
}

// TestServeCutsSlowBody: a POST /join that declares 8,000 bytes and sends one byte
// every 200 ms is cut once PARLEY_BODY_TIMEOUT has passed, while a WebSocket opened
// on the same server is still served well past that deadline.
func TestServeCutsSlowBody(t *testing.T) {
	const bodyTimeout = 2 * time.Second
	s := serve(t, "PARLEY_BODY_TIMEOUT="+bodyTimeout.String())

	cookie := s.join(t, "slow", "ann@example.org")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, "ws://"+s.addr+"/rooms/slow/ws", &websocket.DialOptions{
		HTTPHeader: http.Header{"Cookie": {cookie.Name + "=" + cookie.Value}, "Origin": {s.url}}})
	if err != nil {
		t.Fatal(err)
	}
	defer ws.CloseNow()
	wsErr := make(chan error, 1)
	go func() {
		for {
			if _, _, err := ws.Read(ctx); err != nil {
				wsErr <- err
				return
			}
		}
	}()

	// The server's deadline runs from its accept, which follows the start of the dial.
	start := time.Now()
	conn, err := net.Dial("tcp", s.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "POST /join HTTP/1.1\r\nHost: %s\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 8000\r\n\r\n", s.addr)
	go func() {
		for {
			if _, err := conn.Write([]byte("a")); err != nil {
				return
			}
			time.Sleep(200 * time.Millisecond)
		}
	}()
	_ = conn.SetReadDeadline(time.Now().Add(bodyTimeout + 8*time.Second))
	_, err = io.Copy(io.Discard, conn) // returns when the server closes the connection
	took := time.Since(start)
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatalf("the slow body's connection was still open after %v (PARLEY_BODY_TIMEOUT %v)", took, bodyTimeout)
	}
	if took > bodyTimeout+3*time.Second {
		t.Fatalf("the slow body was cut after %v, want about %v", took, bodyTimeout)
	}
	t.Logf("slow body cut after %v", took.Round(10*time.Millisecond))

	// The WebSocket, open since before the slow body started, outlived its deadline.
	select {
	case err := <-wsErr:
		t.Fatalf("the WebSocket was closed: %v", err)
	default:
	}
	if time.Since(start) < bodyTimeout {
		t.Fatal("the test ended before the deadline passed")
	}
	pctx, pcancel := context.WithTimeout(ctx, 5*time.Second)
	defer pcancel()
	if err := ws.Ping(pctx); err != nil {
		t.Fatalf("the WebSocket stopped answering %v after it opened: %v", time.Since(start), err)
	}
}

// TestServeMaxConns: with PARLEY_MAX_CONNS=2 and two connections held open, a third
// gets 503 with Retry-After; once one closes, requests are served again.
func TestServeMaxConns(t *testing.T) {
	s := serve(t, "PARLEY_MAX_CONNS=2")
	var held []net.Conn
	for deadline := time.Now().Add(10 * time.Second); len(held) < 2; {
		c, err := net.Dial("tcp", s.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		// A keep-alive request answered, so the server holds the connection open.
		fmt.Fprintf(c, "GET /healthz HTTP/1.1\r\nHost: %s\r\n\r\n", s.addr)
		res, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err == nil && res.StatusCode == http.StatusServiceUnavailable && time.Now().Before(deadline) {
			// serve's health probe closed its connection, but the server has not
			// seen the close yet and still counts it: try again once it has.
			c.Close()
			time.Sleep(20 * time.Millisecond)
			continue
		}
		if err != nil || res.StatusCode != http.StatusOK {
			t.Fatalf("held connection: %v %v", res, err)
		}
		held = append(held, c)
	}
	res, err := noKeepAlive.Get(s.url + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusServiceUnavailable || res.Header.Get("Retry-After") == "" || !strings.Contains(string(body), "connection limit") {
		t.Fatalf("third connection: %d %v %q, want 503 with Retry-After", res.StatusCode, res.Header, body)
	}
	held[0].Close()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		res, err := noKeepAlive.Get(s.url + "/healthz")
		if err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("a freed connection slot was never given back")
		}
	}
	// The probe's own connections may still hold the slots for a moment after their
	// answers: free the other held one, and read the metric once /metrics answers.
	held[1].Close()
	var m string
	testenv.Eventually(t, 10*time.Second, func() bool {
		m = s.metric(t, `parley_refusals_total{reason="server_full"}`)
		return m != ""
	}, "a /metrics answer with the server_full refusals")
	if m == "0" {
		t.Errorf("server_full refusals = %q, want counted", m)
	}
}

// metric returns the value of one /metrics line, "" when absent.
func (s *served) metric(t *testing.T, name string) string {
	t.Helper()
	res, err := noKeepAlive.Get(s.url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	sc := bufio.NewScanner(res.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			return v
		}
	}
	return ""
}
