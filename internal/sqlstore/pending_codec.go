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

// The blob of a message_chunks row (chunks.go) holds consecutive messages of one chat,
// which share their session id, room and kind, and whose from and to are the chat's
// two people: repeated in every message, as in a pending batch, those made up about
// two thirds of a stored message (so a chat's second of messages spilled into
// overflow pages, and every merge and checkpoint copied them). So the chunk's
// distinct values of those five fields come first, once, and each message names
// them by their index:
//
//	chunkVersion
//	uvarint n, then n times: uvarint length and bytes (the table)
//	for each message: uvarint index of its session id, from, to, room and kind in
//	the table; uvarint length and bytes of its client id, then of its text; varint
//	seq and varint time (unix microseconds), each minus the previous message's (the
//	first: minus zero)
//
// Decoding checks every length and index, and the table's strings are shared by the
// chunk's messages. Rows written by an earlier version (pendingVersion) still read.
const chunkVersion = 2

// chunkTableMax bounds the table: a chunk is one chat's, so it holds a handful of
// values, and never more than five per message (addChunks writes at most chunkMax
// messages); a larger count is corruption.
const chunkTableMax = 5 * chunkMax

// chunkEncoder encodes chunks, reusing its table between them.
type chunkEncoder struct {
	table   []string
	touched byte // what touch read, kept so the reads are not optimized away
}

// appendChunk appends the chunk blob of msgs, consecutive messages of one chat, to b.
func (e *chunkEncoder) appendChunk(b []byte, msgs []*chat.Message) []byte {
	e.touch(msgs)
	e.table = e.table[:0]
	for _, m := range msgs {
		for _, s := range [...]string{m.SessionID, m.From, m.To, m.Room, string(m.Kind)} {
			e.index(s)
		}
	}
	b = append(b, chunkVersion)
	b = binary.AppendUvarint(b, uint64(len(e.table)))
	for _, s := range e.table {
		b = binary.AppendUvarint(b, uint64(len(s)))
		b = append(b, s...)
	}
	var seq, at int64
	for _, m := range msgs {
		for _, s := range [...]string{m.SessionID, m.From, m.To, m.Room, string(m.Kind)} {
			b = binary.AppendUvarint(b, uint64(e.index(s)))
		}
		for _, s := range [...]string{m.ClientID, m.Text} {
			b = binary.AppendUvarint(b, uint64(len(s)))
			b = append(b, s...)
		}
		b = binary.AppendVarint(b, m.Seq-seq)
		t := m.CreatedAt.UnixMicro()
		b = binary.AppendVarint(b, t-at)
		seq, at = m.Seq, t
	}
	clear(e.table)
	return b
}

// touch reads a byte at each end of every message's client id and text before the
// encoding copies them. A merge encodes messages that have waited up to a second,
// long out of the processor's cache, one at a time: each copy waited for its memory
// in turn (most of the merge's encoding time). These reads do not depend on each
// other, so the processor has many of them in flight at once.
func (e *chunkEncoder) touch(msgs []*chat.Message) {
	var x byte
	for _, m := range msgs {
		if n := len(m.ClientID); n > 0 {
			x ^= m.ClientID[0] ^ m.ClientID[n-1]
		}
		if n := len(m.Text); n > 0 {
			x ^= m.Text[0] ^ m.Text[n-1]
		}
	}
	e.touched = x
}

// index returns s's place in the table, adding it if new.
func (e *chunkEncoder) index(s string) int {
	for i, t := range e.table {
		if t == s {
			return i
		}
	}
	e.table = append(e.table, s)
	return len(e.table) - 1
}

// decodeChunk decodes a message_chunks blob of either version.
func decodeChunk(b []byte) ([]chat.Message, error) {
	if len(b) == 0 || b[0] != chunkVersion {
		return decodePending(b)
	}
	b = b[1:]
	n, k := binary.Uvarint(b)
	if k <= 0 || n == 0 || n > chunkTableMax {
		return nil, errBadPending
	}
	b = b[k:]
	table := make([]string, n)
	for i := range table {
		if table[i], b, k = cutString(b); k < 0 {
			return nil, errBadPending
		}
	}
	var out []chat.Message
	var seq, at int64
	for len(b) > 0 {
		var f [5]string
		for i := range f {
			x, k := binary.Uvarint(b)
			if k <= 0 || x >= n {
				return nil, errBadPending
			}
			f[i], b = table[x], b[k:]
		}
		var id, text string
		if id, b, k = cutString(b); k < 0 {
			return nil, errBadPending
		}
		if text, b, k = cutString(b); k < 0 {
			return nil, errBadPending
		}
		ds, dt, rest, ok := cutSeqAt(b)
		if !ok {
			return nil, errBadPending
		}
		b = rest
		seq, at = seq+ds, at+dt
		out = append(out, chat.Message{SessionID: f[0], ClientID: id, From: f[1], To: f[2], Room: f[3],
			Kind: chat.Kind(f[4]), Text: text, Seq: seq, CreatedAt: time.UnixMicro(at).UTC()})
	}
	if len(out) == 0 {
		return nil, errBadPending
	}
	return out, nil
}

// cutString reads a uvarint length and that many bytes as a string; k is -1 when b
// is too short.
func cutString(b []byte) (s string, rest []byte, k int) {
	n, k := binary.Uvarint(b)
	if k <= 0 || n > uint64(len(b)-k) {
		return "", nil, -1
	}
	return string(b[k : k+int(n)]), b[k+int(n):], k
}

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
			var k int
			if f[i], b, k = cutString(b); k < 0 {
				return nil, errBadPending
			}
		}
		m.SessionID, m.ClientID, m.From, m.To, m.Room, m.Kind, m.Text = f[0], f[1], f[2], f[3], f[4], chat.Kind(f[5]), f[6]
		seq, at, rest, ok := cutSeqAt(b)
		if !ok {
			return nil, errBadPending
		}
		b = rest
		m.Seq, m.CreatedAt = seq, time.UnixMicro(at).UTC()
		out = append(out, m)
	}
	return out, nil
}

// cutSeqAt reads the two varints that end a message's encoding: its seq and its time
// (or, in a chunk, their differences from the previous message's).
func cutSeqAt(b []byte) (seq, at int64, rest []byte, ok bool) {
	seq, k := binary.Varint(b)
	if k <= 0 {
		return 0, 0, nil, false
	}
	at, j := binary.Varint(b[k:])
	if j <= 0 {
		return 0, 0, nil, false
	}
	return seq, at, b[k+j:], true
}
