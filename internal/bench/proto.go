package bench

import (
	"bytes"
	"encoding/json"
	"strconv"
)

// Protocols the generator speaks, so the same closed loop measures Parley and the
// servers it is compared with (docs/BENCHMARKS.md, `parley bench compare`).
const (
	// ProtoParley is Parley's own protocol (docs/protocol.md): POST /join, then
	// /rooms/{room}/ws, send frames, message frames with a seq per room.
	ProtoParley = "parley"
	// ProtoCentrifugo is Centrifugo's JSON client protocol over WebSocket
	// (/connection/websocket): connect without a token (the server runs with
	// client.insecure), subscribe to a channel named after the room, publish. The
	// publication's data is the message frame Parley would send, so it is checked the
	// same way, without a seq (the memory engine keeps no history).
	ProtoCentrifugo = "centrifugo"
	// ProtoHub is the bare hub of internal/bench/barehub: /ws?room=NAME, and every text
	// frame a client sends comes back, byte for byte, to every client of the room. The
	// generator sends the message frame itself.
	ProtoHub = "hub"
)

// appendMessage appends a message frame of message n of c, as Parley would send it
// (without a seq): what the hub relays and what Centrifugo publishes.
func appendMessage(buf []byte, c *client, n int, text string) []byte {
	buf = append(buf, `{"type":"message","id":"`...)
	buf = append(buf, c.prefix...)
	buf = strconv.AppendInt(buf, int64(n), 10)
	buf = append(buf, `","from":"`...)
	buf = append(buf, c.email...)
	buf = append(buf, `","text":"`...)
	buf = append(buf, text...)
	return append(buf, `"}`...)
}

// appendSend appends the frame that sends message n of c in the site's protocol.
func appendSend(buf []byte, c *client, n int, text string) []byte {
	switch c.site.proto {
	case ProtoHub:
		return appendMessage(buf, c, n, text)
	case ProtoCentrifugo:
		c.cmdID++
		buf = append(buf, `{"id":`...)
		buf = strconv.AppendInt(buf, int64(c.cmdID), 10)
		buf = append(buf, `,"publish":{"channel":"`...)
		buf = append(buf, c.room...)
		buf = append(buf, `","data":`...)
		buf = appendMessage(buf, c, n, text)
		return append(buf, `}}`...)
	}
	return sendFrame(buf, c.prefix, n, text)
}

// Centrifugo command ids of the handshake; publishes take the ids after them.
const (
	centrifugoConnectID   = 1
	centrifugoSubscribeID = 2
)

// centrifugoHello is the handshake the generator writes right after the WebSocket
// opens: connect (no token), then subscribe to the room's channel.
func centrifugoHello(room string) [][]byte {
	return [][]byte{
		[]byte(`{"id":1,"connect":{"name":"parley-bench"}}`),
		[]byte(`{"id":2,"subscribe":{"channel":"` + room + `"}}`),
	}
}

// handleCentrifugo records one WebSocket message from Centrifugo: one or more replies
// separated by newlines. A publication's data goes through the same checks as a
// Parley message frame. Pings (an empty reply, {}) are answered with {}.
func (c *client) handleCentrifugo(data []byte) event {
	var ev event
	for len(data) > 0 {
		line := data
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			line, data = data[:i], data[i+1:]
		} else {
			data = nil
		}
		if e := c.centrifugoReply(bytes.TrimSpace(line)); e.own != 0 || e.failed {
			ev = e // at most one own message is awaited at a time
		}
	}
	return ev
}

var (
	centrifugoPing       = []byte(`{}`)
	centrifugoPushMarker = []byte(`"push":`)
	centrifugoDataKey    = []byte(`"data":`)
	centrifugoPublishOK  = []byte(`"publish":{}`)
)

func (c *client) centrifugoReply(line []byte) event {
	switch {
	case len(line) == 0:
		return event{}
	case bytes.Equal(line, centrifugoPing):
		if err := c.ws.writeFrame(opText, centrifugoPing); err != nil {
			c.cnt.addError("write")
		}
		return event{}
	case bytes.Contains(line, centrifugoPushMarker):
		if msg := pushData(line); msg != nil {
			return c.handleParley(msg)
		}
		return event{} // a push that is no publication (join, leave…): not counted
	case bytes.Contains(line, centrifugoPublishOK) && !bytes.Contains(line, []byte(`"error"`)):
		c.stats.acks.Add(1)
		return event{}
	}
	var r struct {
		ID    int `json:"id"`
		Error *struct {
			Code    int    `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
		Subscribe json.RawMessage `json:"subscribe"`
	}
	if err := json.Unmarshal(line, &r); err != nil {
		c.cnt.addError("bad_frame")
		return event{}
	}
	if r.Error != nil {
		code := "centrifugo_" + strconv.Itoa(r.Error.Code)
		c.cnt.addError(code)
		return event{failed: true, code: code}
	}
	if r.ID == centrifugoSubscribeID && r.Subscribe != nil {
		c.welcomed = true
	}
	return event{}
}

// pushData returns the data object of a publication push, or nil. The bench's data
// are flat objects of letters, digits and punctuation without braces in strings, but
// the braces are matched outside strings anyway.
func pushData(line []byte) []byte {
	i := bytes.Index(line, centrifugoDataKey)
	if i < 0 {
		return nil
	}
	i += len(centrifugoDataKey)
	for i < len(line) && (line[i] == ' ' || line[i] == '\t' || line[i] == '\n' || line[i] == '\r') {
		i++
	}
	if i >= len(line) || line[i] != '{' {
		return nil
	}
	depth, inString := 0, false
	for j := i; j < len(line); j++ {
		switch ch := line[j]; {
		case inString && ch == '\\':
			j++
		case ch == '"':
			inString = !inString
		case inString:
		case ch == '{':
			depth++
		case ch == '}':
			if depth--; depth == 0 {
				return line[i : j+1]
			}
		}
	}
	return nil
}
