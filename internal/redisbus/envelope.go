package redisbus

import (
	"encoding/binary"

	"parley/internal/chat"
)

// envelopeVersion leads every published payload, so a replica running newer code
// can tell an old envelope from a new one during a rolling upgrade.
const envelopeVersion = 1

// encodeEvent packs ev into the compact binary envelope published on the session's
// channel: version, type, flags (bit 0: online), seq (varint), email length (uvarint),
// email, then the frame, which is already JSON and is carried as is. The session is
// the channel's name, so it is not repeated.
func encodeEvent(ev chat.Event) []byte {
	buf := make([]byte, 0, 3+2*binary.MaxVarintLen64+len(ev.Email)+len(ev.Frame))
	var flags byte
	if ev.Online {
		flags |= 1
	}
	buf = append(buf, envelopeVersion, byte(ev.Type), flags)
	buf = binary.AppendVarint(buf, ev.Seq)
	buf = binary.AppendUvarint(buf, uint64(len(ev.Email)))
	buf = append(buf, ev.Email...)
	return append(buf, ev.Frame...)
}

// decodeEvent reverses encodeEvent. Frame is a fresh slice that subscribers share
// and never modify.
func decodeEvent(sessionID string, p []byte) (chat.Event, error) {
	bad := chat.Errorf(chat.EInternal, "malformed event envelope")
	if len(p) < 3 || p[0] != envelopeVersion {
		return chat.Event{}, bad
	}
	ev := chat.Event{Session: sessionID, Type: chat.EventType(p[1]), Online: p[2]&1 != 0}
	p = p[3:]
	seq, n := binary.Varint(p)
	if n <= 0 {
		return chat.Event{}, bad
	}
	ev.Seq, p = seq, p[n:]
	elen, n := binary.Uvarint(p)
	if n <= 0 || elen > uint64(len(p)-n) {
		return chat.Event{}, bad
	}
	p = p[n:]
	ev.Email, p = string(p[:elen]), p[elen:]
	if len(p) > 0 {
		ev.Frame = p
	}
	return ev, nil
}
