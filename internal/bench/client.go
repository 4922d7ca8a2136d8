package bench

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gobwas/ws"
)

// Limits of one client's connection.
const (
	joinTimeout   = 15 * time.Second
	dialTimeout   = 15 * time.Second
	welcomeWait   = 15 * time.Second
	readLimit     = 1 << 20 // a replay of history is one frame per message, so this is generous
	retryBackoff  = 50 * time.Millisecond
	maxReconnects = 20
)

// site is where the clients sign in and connect, with the HTTP client they share.
type site struct {
	proto   string // ProtoParley, ProtoCentrifugo or ProtoHub
	base    *url.URL
	origin  string
	http    *http.Client                                                      // for POST /join: keeps connections, does not follow redirects
	netDial func(ctx context.Context, network, addr string) (net.Conn, error) // for WebSockets
}

func newSite(rawURL, proto string, parallel int) (*site, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, err
	}
	tr := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: dialTimeout}).DialContext,
		MaxIdleConns:        parallel * 2,
		MaxIdleConnsPerHost: parallel * 2,
		IdleConnTimeout:     30 * time.Second,
	}
	noRedirect := func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	if proto == "" {
		proto = ProtoParley
	}
	return &site{
		proto:   proto,
		base:    u,
		origin:  u.Scheme + "://" + u.Host,
		http:    &http.Client{Transport: tr, CheckRedirect: noRedirect, Timeout: joinTimeout},
		netDial: tr.DialContext,
	}, nil
}

func (s *site) close() { s.http.CloseIdleConnections() }

// join signs email in to room like a browser's form: POST /join, expect 303, keep the
// cookies. It returns the Cookie header value to present on the WebSocket.
func (s *site) join(ctx context.Context, room, email string) (string, error) {
	form := url.Values{"room": {room}, "email": {email}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.origin+"/join", strings.NewReader(form.Encode()))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", s.origin)
	req.Header.Set("Sec-Fetch-Site", "same-origin") // as a browser sends a form from Parley's page
	resp, err := s.http.Do(req)
	if err != nil {
		return "", &codedError{code: "join_failed", err: err}
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	cookies := resp.Cookies()
	if resp.StatusCode == http.StatusOK && bytes.Contains(body, []byte(`href="/dev/mail"`)) {
		// Sign-in by emailed link, development mode: follow the link from the outbox.
		if cookies, err = s.signInFromOutbox(ctx, email); err != nil {
			return "", err
		}
	} else if resp.StatusCode != http.StatusSeeOther || len(cookies) == 0 {
		return "", &codedError{code: "join_" + strconv.Itoa(resp.StatusCode),
			err: fmt.Errorf("POST /join as %s: %s, %d cookies (want 303 with a cookie, or a development server's outbox; is the server run with PARLEY_AUTH=trust?): %.200s",
				email, resp.Status, len(cookies), bytes.TrimSpace(body))}
	}
	parts := make([]string, 0, len(cookies))
	for _, c := range cookies {
		parts = append(parts, c.Name+"="+c.Value)
	}
	return strings.Join(parts, "; "), nil
}

// dial opens the room's WebSocket with the cookie, replaying messages after seq
// (all of them when after < 0), and writes the protocol's handshake if it has one.
func (s *site) dial(ctx context.Context, room, cookie string, after int64) (*wsConn, error) {
	scheme := "ws"
	if s.base.Scheme == "https" {
		scheme = "wss"
	}
	u := scheme + "://" + s.base.Host
	switch s.proto {
	case ProtoCentrifugo:
		u += "/connection/websocket"
	case ProtoHub:
		u += "/ws?room=" + url.QueryEscape(room)
	default:
		u += "/rooms/" + url.PathEscape(room) + "/ws"
		if after >= 0 {
			u += "?after=" + strconv.FormatInt(after, 10)
		}
	}
	header := http.Header{"Origin": {s.origin}}
	if cookie != "" {
		header.Set("Cookie", cookie)
	}
	d := ws.Dialer{
		Timeout: dialTimeout,
		Header:  ws.HandshakeHeaderHTTP(header),
		NetDial: s.netDial,
	}
	nc, br, _, err := d.Dial(ctx, u)
	if err != nil {
		code := "dial_failed"
		var status ws.StatusError
		if errors.As(err, &status) {
			code = "dial_" + strconv.Itoa(int(status))
		}
		return nil, &codedError{code: code, err: fmt.Errorf("dial %s: %w", u, err)}
	}
	var buffered []byte // frames the server sent right behind its handshake response
	if br != nil {
		buffered, _ = br.Peek(br.Buffered())
	}
	c := newWSConn(nc, buffered)
	if br != nil {
		ws.PutReader(br)
	}
	if s.proto == ProtoCentrifugo {
		for _, cmd := range centrifugoHello(room) {
			if err := c.writeFrame(opText, cmd); err != nil {
				_ = nc.Close()
				return nil, &codedError{code: "dial_failed", err: fmt.Errorf("centrifugo handshake: %w", err)}
			}
		}
	}
	return c, nil
}

// codedError is a failure with the short code it is counted under in the report.
type codedError struct {
	code string
	err  error
}

func (e *codedError) Error() string { return e.code + ": " + e.err.Error() }
func (e *codedError) Unwrap() error { return e.err }

// errorCode is the report's code for err.
func errorCode(err error) string {
	var ce *codedError
	if errors.As(err, &ce) {
		return ce.code
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return "timeout"
	}
	return "other"
}

// sendFrame appends the JSON of a send frame of message n, whose id is prefix + n.
// The id and text need no escaping: the bench makes both from ASCII letters, digits
// and '-'.
func sendFrame(buf []byte, prefix string, n int, text string) []byte {
	buf = append(buf, `{"type":"send","id":"`...)
	buf = append(buf, prefix...)
	buf = strconv.AppendInt(buf, int64(n), 10)
	buf = append(buf, `","text":"`...)
	buf = append(buf, text...)
	return append(buf, `"}`...)
}

// messageText returns size bytes of printable text.
func messageText(size int) string {
	const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
	b := make([]byte, size)
	for i := range b {
		b[i] = alphabet[i%len(alphabet)]
	}
	return string(b)
}

// idNumber parses the message number n from an id "<prefix><n>" made by this run;
// ok is false for any other id.
func idNumber(id []byte, prefix string) (int, bool) {
	if len(id) <= len(prefix) || string(id[:len(prefix)]) != prefix {
		return 0, false
	}
	n := 0
	for _, c := range id[len(prefix):] {
		if c < '0' || c > '9' || n > 1e9 {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, n >= 1
}

// counters are the run-wide totals the progress line and the result read. The busy
// ones (sends, deliveries, acks) are kept per client, each written by its client's
// goroutine only, and added up when read: one shared counter would move its cache
// line between the cores at every delivery.
type counters struct {
	reconnects atomic.Int64
	mu         sync.Mutex
	errs       map[string]int64
	clients    []*clientStats
}

// clientStats are one client's busy counters.
type clientStats struct {
	sends      atomic.Int64 // first attempts of a message
	deliveries atomic.Int64 // message frames received
	acks       atomic.Int64
}

// totals is the sum of the busy counters of every client.
type totals struct{ sends, deliveries, acks int64 }

func newCounters() *counters { return &counters{errs: make(map[string]int64)} }

// register adds a client's counters to the totals.
func (c *counters) register(s *clientStats) {
	c.mu.Lock()
	c.clients = append(c.clients, s)
	c.mu.Unlock()
}

func (c *counters) totals() totals {
	c.mu.Lock()
	defer c.mu.Unlock()
	var t totals
	for _, s := range c.clients {
		t.sends += s.sends.Load()
		t.deliveries += s.deliveries.Load()
		t.acks += s.acks.Load()
	}
	return t
}

func (c *counters) addError(code string) {
	c.mu.Lock()
	c.errs[code]++
	c.mu.Unlock()
}

func (c *counters) errorTotal() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	var n int64
	for _, v := range c.errs {
		n += v
	}
	return n
}

func (c *counters) errorsCopy() map[string]int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	m := make(map[string]int64, len(c.errs))
	for k, v := range c.errs {
		m[k] = v
	}
	return m
}

func newRunID() string {
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
