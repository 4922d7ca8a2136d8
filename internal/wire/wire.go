// Package wire is Parley's WebSocket protocol as bytes (docs/protocol.md): the frame
// types, the close codes, the encoders of server frames, the decoder of client frames,
// and a zero-copy reader of server frames for load generators. The server, the chat
// layer, parley bench and every test speak through it, so a frame is written out once.
// It imports only package chat.
package wire

// Frame types. Client frames first, then server frames; typing and receipts are the
// v1.1 signals (docs/protocol.md).
const (
	TypeSend     = "send"
	TypeBye      = "bye"
	TypeEnd      = "end"
	TypeTyping   = "typing"
	TypeReceived = "received"
	TypeRead     = "read"

	TypeWelcome    = "welcome"
	TypeMessage    = "message"
	TypeAck        = "ack"
	TypePresence   = "presence"
	TypeEnded      = "ended"
	TypeTranscript = "transcript"
	TypeError      = "error"
	TypeReceipt    = "receipt"
)

// WebSocket close codes Parley sends (RFC 6455 and its own 4003). Untyped, so they fit
// whichever WebSocket library's status type.
const (
	CloseNormal        = 1000
	CloseGoingAway     = 1001 // the server shuts down: reconnect, to any replica
	CloseProtocolError = 1002
	ClosePolicy        = 1008 // too slow, too many connections
	CloseTooBig        = 1009
	CloseInternal      = 1011
	CloseTryAgainLater = 1013 // a backend needed to enter is down: reconnect later
	CloseRoomFull      = 4003 // a third person entering a chat of two
)

// AtLayout writes message times as RFC 3339 in UTC with exactly six fraction digits,
// the microseconds every store keeps: "2026-11-27T12:00:00.123456Z".
const AtLayout = "2006-01-02T15:04:05.000000Z07:00"
