package web

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"parley/internal/wire"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"
)

// rawClient speaks WebSocket frame by frame over TCP, to send what a well-behaved
// client library would not (unmasked frames, fragments, pings) and to see how the
// server's frames arrive on the wire.
type rawClient struct {
	t    *testing.T
	conn net.Conn
	br   *bufio.Reader
}

// dialRawTCP opens room as email and sends early right behind the handshake request,
// in the same write.
func (e *wsEnv) dialRawTCP(room, email string, early []byte) *rawClient {
	e.t.Helper()
	e.join(room, email)
	conn, err := net.Dial("tcp", e.ts.Listener.Addr().String())
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { _ = conn.Close() })
	key := make([]byte, 16)
	_, _ = rand.Read(key)
	req := "GET /rooms/" + room + "/ws HTTP/1.1\r\nHost: " + e.ts.Listener.Addr().String() +
		"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: " +
		base64.StdEncoding.EncodeToString(key) + "\r\nOrigin: " + e.cfg.PublicURL + "\r\nCookie: " + e.cookie(email) + "\r\n\r\n"
	if _, err := conn.Write(append([]byte(req), early...)); err != nil {
		e.t.Fatal(err)
	}
	c := &rawClient{t: e.t, conn: conn, br: bufio.NewReader(conn)}
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		e.t.Fatalf("handshake: %v %v", resp, err)
	}
	return c
}

// rawFrame encodes a client frame; masked as clients must, unless told otherwise.
func rawFrame(fin bool, op ws.OpCode, masked bool, payload []byte) []byte {
	h := ws.Header{Fin: fin, OpCode: op, Masked: masked, Length: int64(len(payload))}
	p := append([]byte(nil), payload...)
	if masked {
		_, _ = rand.Read(h.Mask[:])
		ws.Cipher(p, h.Mask, 0)
	}
	var b bytes.Buffer
	_ = ws.WriteHeader(&b, h)
	b.Write(p)
	return b.Bytes()
}

func (c *rawClient) write(frames ...[]byte) {
	c.t.Helper()
	if _, err := c.conn.Write(bytes.Join(frames, nil)); err != nil {
		c.t.Fatal(err)
	}
}

// next reads the server's next frame.
func (c *rawClient) next() ws.Frame {
	c.t.Helper()
	_ = c.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	f, err := ws.ReadFrame(c.br)
	if err != nil {
		c.t.Fatalf("reading a frame: %v", err)
	}
	return f
}

// nextText reads frames up to the next text frame and returns its type.
func (c *rawClient) nextText() wsFrame {
	c.t.Helper()
	for {
		f := c.next()
		if f.Header.OpCode != ws.OpText {
			continue
		}
		var w wsFrame
		if err := json.Unmarshal(f.Payload, &w); err != nil {
			c.t.Fatalf("frame %q: %v", f.Payload, err)
		}
		w.raw = string(f.Payload)
		return w
	}
}

// closeCode reads until the server's close frame and returns its code.
func (c *rawClient) closeCode() ws.StatusCode {
	c.t.Helper()
	for {
		if f := c.next(); f.Header.OpCode == ws.OpClose {
			code, _ := ws.ParseCloseFrameData(f.Payload)
			return code
		}
	}
}

func sendFrame(id, text string) []byte {
	b, _ := json.Marshal(map[string]string{"type": "send", "id": id, "text": text})
	return b
}

// TestWSAckAndMessageInOneRead: the sender's ack and its own message are written
// together, so they arrive in one read, every time.
func TestWSAckAndMessageInOneRead(t *testing.T) {
	e := newWSEnv(t, Config{RatePerSec: 1e6, RateBurst: 1e6})
	c := e.dialRawTCP("onewrite", "host@x.org", nil)
	if w := c.nextText(); w.Type != wire.TypeWelcome {
		t.Fatalf("first frame %s", w.raw)
	}
	if c.br.Buffered() != 0 {
		t.Fatalf("%d bytes after the welcome", c.br.Buffered())
	}
	buf := make([]byte, 4096)
	for i := range 20 {
		c.write(rawFrame(true, ws.OpText, true, sendFrame(fmt.Sprint("c-", i), "hello")))
		_ = c.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, err := c.conn.Read(buf)
		if err != nil {
			t.Fatal(err)
		}
		r := bytes.NewReader(buf[:n])
		for _, want := range []string{`"ack"`, `"message"`} {
			if f, err := ws.ReadFrame(r); err != nil || !bytes.Contains(f.Payload, []byte(want)) {
				t.Fatalf("send %d: read %q, want the ack and the message in one read", i, buf[:n])
			}
		}
		if r.Len() != 0 {
			t.Fatalf("send %d: read %q, want only the ack and the message", i, buf[:n])
		}
	}
}

// TestWSFramesOnTheWire: what the server does with frames a client library would not
// send, and with a frame sent right behind the handshake.
func TestWSFramesOnTheWire(t *testing.T) {
	e := newWSEnv(t, Config{ReadLimit: 1024})
	t.Run("FrameRightAfterHandshake", func(t *testing.T) {
		c := e.dialRawTCP("wire1", "host@x.org", rawFrame(true, ws.OpText, true, sendFrame("early", "hi")))
		c.nextText() // welcome
		if f := c.nextText(); f.Type != wire.TypeAck || f.ID != "early" {
			t.Fatalf("got %s, want the ack of the frame sent with the handshake", f.raw)
		}
	})
	t.Run("FragmentedWithPingBetween", func(t *testing.T) {
		c := e.dialRawTCP("wire2", "host@x.org", nil)
		c.nextText()
		whole := sendFrame("frag", "in three parts")
		c.write(rawFrame(false, ws.OpText, true, whole[:5]),
			rawFrame(false, ws.OpContinuation, true, whole[5:12]),
			rawFrame(true, ws.OpPing, true, []byte("are you there")),
			rawFrame(true, ws.OpContinuation, true, whole[12:]))
		if f := c.next(); f.Header.OpCode != ws.OpPong || string(f.Payload) != "are you there" {
			t.Fatalf("got %v %q, want the pong", f.Header.OpCode, f.Payload)
		}
		if f := c.nextText(); f.Type != wire.TypeAck || f.ID != "frag" {
			t.Fatalf("got %s, want the ack of the fragmented message", f.raw)
		}
	})
	t.Run("FragmentsOverTheLimit", func(t *testing.T) {
		c := e.dialRawTCP("wire3", "host@x.org", nil)
		c.nextText()
		part := bytes.Repeat([]byte("x"), 600) // each under the 1 KiB limit, together over it
		c.write(rawFrame(false, ws.OpText, true, part), rawFrame(true, ws.OpContinuation, true, part))
		if code := c.closeCode(); code != ws.StatusMessageTooBig {
			t.Fatalf("close code %d, want 1009", code)
		}
	})
	t.Run("UnmaskedFrame", func(t *testing.T) {
		c := e.dialRawTCP("wire4", "host@x.org", nil)
		c.nextText()
		c.write(rawFrame(true, ws.OpText, false, sendFrame("bare", "hi")))
		if code := c.closeCode(); code != ws.StatusProtocolError {
			t.Fatalf("close code %d, want 1002", code)
		}
	})
	t.Run("InvalidUTF8", func(t *testing.T) {
		c := e.dialRawTCP("wire5", "host@x.org", nil)
		c.nextText()
		c.write(rawFrame(true, ws.OpText, true, []byte(`{"type":"send","id":"u","text":"`+"\xff"+`"}`)))
		if f := c.nextText(); f.Type != wire.TypeError || f.Code != "invalid_frame" {
			t.Fatalf("got %s, want invalid_frame", f.raw)
		}
	})
	t.Run("ClientCloses", func(t *testing.T) {
		before := e.openConns()
		c := e.dialRawTCP("wire6", "host@x.org", nil)
		c.nextText()
		c.write(rawFrame(true, ws.OpClose, true, ws.NewCloseFrameBody(ws.StatusGoingAway, "tab closed")))
		if code := c.closeCode(); code != ws.StatusGoingAway {
			t.Fatalf("close reply %d, want the client's 1001", code)
		}
		waitUntil(t, "the connection to end", func() bool { return e.openConns() == before })
	})
}

// TestWSFlushWritesOnce: a batch of frames is one Write on the connection.
func TestWSFlushWritesOnce(t *testing.T) {
	conn := &countingConn{}
	c := &frameConn{conn: conn}
	for _, f := range []string{`{"type":"ack"}`, `{"type":"message"}`, strings.Repeat("x", 300)} {
		c.Add([]byte(f))
	}
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	if conn.writes != 1 {
		t.Fatalf("%d writes, want 1", conn.writes)
	}
	r := bufio.NewReader(bytes.NewReader(conn.buf.Bytes()))
	for _, want := range []int{14, 18, 300} {
		f, err := ws.ReadFrame(r)
		if err != nil || !f.Header.Fin || f.Header.OpCode != ws.OpText || len(f.Payload) != want {
			t.Fatalf("frame %+v (%v), want a text frame of %d bytes", f.Header, err, want)
		}
	}
}

// countingConn is a net.Conn that counts its writes.
type countingConn struct {
	net.Conn
	writes int
	buf    bytes.Buffer
}

func (c *countingConn) Write(p []byte) (int, error)      { c.writes++; return c.buf.Write(p) }
func (c *countingConn) SetWriteDeadline(time.Time) error { return nil }

// TestWSPlainGetGets426: a request to the WebSocket address that is not a handshake is
// told to upgrade, without being hijacked.
func TestWSPlainGetGets426(t *testing.T) {
	e := newWSEnv(t, Config{})
	req, _ := http.NewRequest("GET", e.ts.URL+"/rooms/plain/ws", nil)
	req.Header.Set("Cookie", e.cookie("host@x.org"))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUpgradeRequired || resp.Header.Get("Upgrade") != "websocket" {
		t.Fatalf("status %d, Upgrade %q; want 426 and websocket", resp.StatusCode, resp.Header.Get("Upgrade"))
	}
}

// TestWSTryFlushPartialWriteIsNotCutInto: on a real TCP connection whose reader has
// stopped reading, TryFlush writes what the socket takes without waiting; when that
// is part of a frame, nothing (here a ping) is written before Flush has written the
// rest, and the reader finds every frame whole and in order once it reads again.
func TestWSTryFlushPartialWriteIsNotCutInto(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			close(accepted)
			return
		}
		accepted <- c
	}()
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	server, ok := <-accepted
	if !ok {
		t.Fatal("accept failed")
	}
	defer server.Close()
	c := &frameConn{conn: server}
	c.canTry()
	if c.raw == nil {
		t.Fatal("a TCP connection cannot be written without waiting")
	}
	// Far more than the socket buffers hold: frames of 1 MiB each.
	const frames, size = 16, 1 << 20
	for i := range frames {
		c.Add(bytes.Repeat([]byte{'a' + byte(i)}, size))
	}
	done, err := c.TryFlush()
	if err != nil || done {
		t.Fatalf("TryFlush of %d MiB to a reader that reads nothing = %v, %v; want not done", frames, done, err)
	}
	if !c.partial {
		t.Fatal("TryFlush wrote nothing; the socket should have taken the start of the batch")
	}
	pinged := make(chan error, 1)
	go func() { pinged <- c.writeControl(ws.OpPing, []byte("p")) }()
	flushed := make(chan error, 1)
	go func() { flushed <- c.Flush() }()
	r := bufio.NewReader(client)
	for i := range frames {
		f, err := ws.ReadFrame(r)
		if err != nil || f.Header.OpCode != ws.OpText || len(f.Payload) != size || f.Payload[size-1] != 'a'+byte(i) {
			t.Fatalf("frame %d: %+v (%v), want text frame %d whole", i, f.Header, err, i)
		}
	}
	f, err := ws.ReadFrame(r)
	if err != nil || f.Header.OpCode != ws.OpPing {
		t.Fatalf("after the batch: %+v (%v), want the ping", f.Header, err)
	}
	if err := <-flushed; err != nil {
		t.Fatal(err)
	}
	if err := <-pinged; err != nil {
		t.Fatal(err)
	}
}
