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

	"github.com/coder/websocket"
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
	base   *url.URL
	origin string
	http   *http.Client // for POST /join: keeps connections, does not follow redirects
	ws     *http.Client // for WebSocket handshakes
}

func newSite(rawURL string, parallel int) (*site, error) {
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
	return &site{
		base:   u,
		origin: u.Scheme + "://" + u.Host,
		http:   &http.Client{Transport: tr, CheckRedirect: noRedirect, Timeout: joinTimeout},
		ws:     &http.Client{Transport: &http.Transport{DialContext: tr.DialContext}},
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
	if resp.StatusCode != http.StatusSeeOther || len(cookies) == 0 {
		return "", &codedError{code: "join_" + strconv.Itoa(resp.StatusCode),
			err: fmt.Errorf("POST /join as %s: %s, %d cookies (want 303 with a cookie; is the server run with PARLEY_AUTH=trust?): %.200s",
				email, resp.Status, len(cookies), bytes.TrimSpace(body))}
	}
	parts := make([]string, 0, len(cookies))
	for _, c := range cookies {
		parts = append(parts, c.Name+"="+c.Value)
	}
	return strings.Join(parts, "; "), nil
}

// dial opens the room's WebSocket with the cookie, replaying messages after seq
// (all of them when after < 0).
func (s *site) dial(ctx context.Context, room, cookie string, after int64) (*websocket.Conn, error) {
	scheme := "ws"
	if s.base.Scheme == "https" {
		scheme = "wss"
	}
	u := scheme + "://" + s.base.Host + "/rooms/" + url.PathEscape(room) + "/ws"
	if after >= 0 {
		u += "?after=" + strconv.FormatInt(after, 10)
	}
	ctx, cancel := context.WithTimeout(ctx, dialTimeout)
	defer cancel()
	h := http.Header{}
	h.Set("Cookie", cookie)
	h.Set("Origin", s.origin)
	c, resp, err := websocket.Dial(ctx, u, &websocket.DialOptions{
		HTTPClient: s.ws, HTTPHeader: h, CompressionMode: websocket.CompressionDisabled,
	})
	if err != nil {
		code := "dial_failed"
		if resp != nil {
			code = "dial_" + strconv.Itoa(resp.StatusCode)
		}
		return nil, &codedError{code: code, err: fmt.Errorf("dial %s: %w", u, err)}
	}
	c.SetReadLimit(readLimit)
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

// frame is the part of a server frame the bench looks at.
type frame struct {
	Type    string `json:"type"`
	Seq     int64  `json:"seq"`
	ID      string `json:"id"`
	From    string `json:"from"`
	Code    string `json:"code"`
	Session string `json:"session"`
}

// sendFrame appends the JSON of a send frame. id and text need no escaping: the bench
// makes both from ASCII letters, digits and '-'.
func sendFrame(buf []byte, id, text string) []byte {
	buf = append(buf, `{"type":"send","id":"`...)
	buf = append(buf, id...)
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
func idNumber(id, prefix string) (int, bool) {
	if !strings.HasPrefix(id, prefix) {
		return 0, false
	}
	n, err := strconv.Atoi(id[len(prefix):])
	if err != nil || n < 1 {
		return 0, false
	}
	return n, true
}

// counters are the run-wide totals the progress line and the result read.
type counters struct {
	sends      atomic.Int64 // first attempts of a message
	deliveries atomic.Int64 // message frames received, at every client
	acks       atomic.Int64
	reconnects atomic.Int64
	errMu      sync.Mutex
	errs       map[string]int64
}

func newCounters() *counters { return &counters{errs: make(map[string]int64)} }

func (c *counters) addError(code string) {
	c.errMu.Lock()
	c.errs[code]++
	c.errMu.Unlock()
}

func (c *counters) errorTotal() int64 {
	c.errMu.Lock()
	defer c.errMu.Unlock()
	var n int64
	for _, v := range c.errs {
		n += v
	}
	return n
}

func (c *counters) errorsCopy() map[string]int64 {
	c.errMu.Lock()
	defer c.errMu.Unlock()
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
