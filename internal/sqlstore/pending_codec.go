package sqlstore

import (
	"encoding/binary"
	"errors"
	"time"

	"parley/internal/chat"
)

// The blob of a batch: for each message, in order, the uvarint lengths and bytes of
// its session id, client id, from, to, room, kind and text, then its seq and its
// time (unix microseconds) as varints. Decoding checks every length.
const pendingVersion = 1

// appendPending appends m's encoding to b.
func appendPending(b []byte, m *chat.Message) []byte {
	for _, s := range [...]string{m.SessionID, m.ClientID, m.From, m.To, m.Room, string(m.Kind), m.Text} {
		b = binary.AppendUvarint(b, uint64(len(s)))
		b = append(b, s...)
	}
	b = binary.AppendVarint(b, m.Seq)
	return binary.AppendVarint(b, m.CreatedAt.UnixMicro())
}

var errBadPending = errors.New("a message_pending batch is malformed")

// decodePending decodes a batch blob (which holds at least one message).
func decodePending(b []byte) ([]chat.Message, error) {
	if len(b) < 2 || b[0] != pendingVersion {
		return nil, errBadPending
	}
	b = b[1:]
	var out []chat.Message
	for len(b) > 0 {
		var m chat.Message
		var f [7]string
		for i := range f {
			n, k := binary.Uvarint(b)
			if k <= 0 || n > uint64(len(b)-k) {
				return nil, errBadPending
			}
			f[i], b = string(b[k:k+int(n)]), b[k+int(n):]
		}
		m.SessionID, m.ClientID, m.From, m.To, m.Room, m.Kind, m.Text = f[0], f[1], f[2], f[3], f[4], chat.Kind(f[5]), f[6]
		seq, k := binary.Varint(b)
		if k <= 0 {
			return nil, errBadPending
		}
		b = b[k:]
		at, k := binary.Varint(b)
		if k <= 0 {
			return nil, errBadPending
		}
		b = b[k:]
		m.Seq, m.CreatedAt = seq, time.UnixMicro(at).UTC()
		out = append(out, m)
	}
	return out, nil
}
