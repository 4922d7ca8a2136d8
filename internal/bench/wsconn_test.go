package bench

import (
	"bytes"
	"errors"
	"io"
	"net"
	"strconv"
	"strings"
	"testing"

	"github.com/gobwas/ws"
)

// scriptConn is a net.Conn that reads a fixed byte stream, chunk bytes per Read at
// most, and records what is written.
type scriptConn struct {
	net.Conn
	in      []byte
	chunk   int
	written bytes.Buffer
}

func (c *scriptConn) Read(p []byte) (int, error) {
	if len(c.in) == 0 {
		return 0, io.EOF
	}
	n := min(len(p), len(c.in))
	if c.chunk > 0 {
		n = min(n, c.chunk)
	}
	copy(p, c.in[:n])
	c.in = c.in[n:]
	return n, nil
}

func (c *scriptConn) Write(p []byte) (int, error) { return c.written.Write(p) }

// serverFrame is a frame as a server writes it (not masked).
func serverFrame(t testing.TB, fin bool, op ws.OpCode, payload []byte) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := ws.WriteFrame(&b, ws.NewFrame(op, fin, payload)); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// clientFrames decodes frames written by a client, checking each is masked.
func clientFrames(t *testing.T, data []byte) []ws.Frame {
	t.Helper()
	var out []ws.Frame
	r := bytes.NewReader(data)
	for r.Len() > 0 {
		f, err := ws.ReadFrame(r)
		if err != nil {
			t.Fatal(err)
		}
		if !f.Header.Masked {
			t.Fatalf("client frame %v not masked", f.Header)
		}
		out = append(out, ws.UnmaskFrameInPlace(f))
	}
	return out
}

func TestWSConnRead(t *testing.T) {
	mid := strings.Repeat("m", 300)   // 16-bit length
	big := strings.Repeat("b", 70000) // 64-bit length, over the read buffer
	var in []byte
	in = append(in, serverFrame(t, true, ws.OpText, []byte(`{"type":"ack"}`))...)
	in = append(in, serverFrame(t, true, ws.OpText, []byte(mid))...)
	in = append(in, serverFrame(t, false, ws.OpText, []byte("frag-"))...)
	in = append(in, serverFrame(t, true, ws.OpPing, []byte("p1"))...) // between fragments
	in = append(in, serverFrame(t, false, ws.OpContinuation, []byte("ment"))...)
	in = append(in, serverFrame(t, true, ws.OpContinuation, []byte("ed"))...)
	in = append(in, serverFrame(t, true, ws.OpPong, nil)...)
	in = append(in, serverFrame(t, true, ws.OpBinary, []byte{1, 2})...)
	in = append(in, serverFrame(t, true, ws.OpText, []byte(big))...)
	in = append(in, serverFrame(t, true, ws.OpClose, ws.NewCloseFrameBody(ws.StatusNormalClosure, ""))...)
	want := []struct {
		op   byte
		data string
	}{{opText, `{"type":"ack"}`}, {opText, mid}, {opText, "frag-mented"}, {opBinary, "\x01\x02"}, {opText, big}}
	for _, chunk := range []int{0, 1, 7, 4096} {
		nc := &scriptConn{in: bytes.Clone(in), chunk: chunk}
		c := newWSConn(nc, nil)
		for i, w := range want {
			op, p, err := c.readMessage()
			if err != nil || op != w.op || string(p) != w.data {
				t.Fatalf("chunk %d, message %d: op %d, %d bytes, %v; want op %d, %d bytes", chunk, i, op, len(p), err, w.op, len(w.data))
			}
		}
		if _, _, err := c.readMessage(); !errors.Is(err, errServerClosed) {
			t.Errorf("chunk %d: after the close frame: %v", chunk, err)
		}
		pongs := clientFrames(t, nc.written.Bytes())
		if len(pongs) != 1 || pongs[0].Header.OpCode != ws.OpPong || string(pongs[0].Payload) != "p1" {
			t.Errorf("chunk %d: written %+v, want one pong p1", chunk, pongs)
		}
	}
}

// The frame just after the handshake response, read by the dialer, comes first.
func TestWSConnBuffered(t *testing.T) {
	f1 := serverFrame(t, true, ws.OpText, []byte("one"))
	f2 := serverFrame(t, true, ws.OpText, []byte("two"))
	c := newWSConn(&scriptConn{in: f2[3:]}, append(bytes.Clone(f1), f2[:3]...))
	for _, w := range []string{"one", "two"} {
		if _, p, err := c.readMessage(); err != nil || string(p) != w {
			t.Fatalf("got %q, %v; want %q", p, err, w)
		}
	}
}

func TestWSConnReadErrors(t *testing.T) {
	tests := []struct {
		name string
		in   []byte
		want error
	}{
		{"TooBig", []byte{0x81, 127, 0, 0, 0, 0, 0, 0x20, 0, 0}, errFrameTooBig},
		{"RSV", []byte{0xc1, 0}, errProtocol},
		{"LongPing", append([]byte{0x89, 126, 0, 126}, make([]byte, 126)...), errProtocol},
		{"StrayContinuation", []byte{0x80, 0}, errProtocol},
		{"Truncated", []byte{0x81, 5, 'a'}, io.EOF},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newWSConn(&scriptConn{in: tt.in}, nil)
			if _, _, err := c.readMessage(); !errors.Is(err, tt.want) {
				t.Errorf("got %v, want %v", err, tt.want)
			}
		})
	}
}

func TestWSConnWrite(t *testing.T) {
	nc := &scriptConn{}
	c := newWSConn(nc, nil)
	var want []string
	for _, size := range []int{0, 5, 125, 126, 300, 65535, 65536, 70000} {
		p := messageText(size)
		want = append(want, p)
		if err := c.writeBuf(opText, append(c.payloadBuf(), p...)); err != nil {
			t.Fatal(err)
		}
	}
	frames := clientFrames(t, nc.written.Bytes())
	if len(frames) != len(want) {
		t.Fatalf("%d frames, want %d", len(frames), len(want))
	}
	for i, f := range frames {
		if !f.Header.Fin || f.Header.OpCode != ws.OpText || string(f.Payload) != want[i] {
			t.Errorf("frame %d: %+v, %d bytes; want %d", i, f.Header, len(f.Payload), len(want[i]))
		}
	}
}

// loopConn is a net.Conn that reads the same bytes over and over and discards writes:
// the frame handling of a client, without the network.
type loopConn struct {
	net.Conn
	data []byte
	off  int
}

func (c *loopConn) Read(p []byte) (int, error) {
	n := copy(p, c.data[c.off:])
	c.off = (c.off + n) % len(c.data)
	return n, nil
}

func (c *loopConn) Write(p []byte) (int, error) { return len(p), nil }

// BenchmarkClientFrames is the generator's CPU per frame received, outside the kernel:
// frame parsing, decoding and the ledger, for a mix of one own message, one peer
// message and one ack (what a client receives per message it sends).
func BenchmarkClientFrames(b *testing.B) {
	c := newClient(&site{}, newCounters(), "r1", 7, "a")
	msg := func(side string, n int) []byte {
		return []byte(`{"type":"message","seq":` + strconv.Itoa(n) + `,"id":"r1-7-` + side + `-` + strconv.Itoa(n) +
			`","from":"bench-r1-7-` + side + `@bench.test","to":"x@bench.test","text":"abcdefghijklmnopqrstuvwxyz012345","kind":"chat","at":"2026-11-27T12:00:00.123456Z"}`)
	}
	var data []byte
	data = append(data, serverFrame(b, true, ws.OpText, msg("a", 1))...)
	data = append(data, serverFrame(b, true, ws.OpText, []byte(`{"type":"ack","id":"r1-7-a-1","seq":1}`))...)
	data = append(data, serverFrame(b, true, ws.OpText, msg("b", 2))...)
	c.ws = newWSConn(&loopConn{data: data}, nil)
	b.ReportAllocs()
	b.SetBytes(int64(len(data) / 3))
	for b.Loop() {
		if _, err := c.next(); err != nil {
			b.Fatal(err)
		}
	}
	if c.stats.deliveries.Load() == 0 || len(c.got.own) < 2 || len(c.got.peer) < 3 {
		b.Fatalf("frames not recorded: %d deliveries", c.stats.deliveries.Load())
	}
}

func BenchmarkClientWrite(b *testing.B) {
	c := newWSConn(&loopConn{data: []byte{0}}, nil)
	text := messageText(DefaultSize)
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		n++
		if err := c.writeBuf(opText, sendFrame(c.payloadBuf(), "r1-7-a-", n, text)); err != nil {
			b.Fatal(err)
		}
	}
}
