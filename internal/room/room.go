// Package room is Parley's chat layer: what happens between two people once a
// connection is open — entering a room's chat, the welcome and the replay, sending,
// the goodbye, ending, presence — with no knowledge of WebSockets or HTTP. A
// connection reaches it through Transport (queue a frame, reply, write now, close),
// the way centrifuge's Client talks to its Transport, so every rule here is tested
// without a socket, and package web only upgrades, reads frames and writes them.
//
// A message flows one way: the transport's reader hands a frame to Client.HandleFrame
// → the limiter → the store → the ack → this replica's connections (the hub) → the
// broker's publish queue for the other replicas. The ack waits for the store only.
package room

import (
	"context"
	"log/slog"
	"time"

	"parley/internal/chat"
	"parley/internal/hub"
	"parley/internal/metrics"
	"parley/internal/wire"
)

// Transport is one connection as the chat layer sees it. Send and Reply must not
// block for long; Write may (it paces the replay); Close must not block at all.
type Transport interface {
	// Send queues a frame the server sends on its own (a message, presence, ended).
	// It returns false when the connection is closed or could not keep up (and is
	// being closed).
	Send(frame []byte) bool
	// Reply queues a frame answering the client's own frame (an ack, a refusal). It
	// never closes the connection for being full: it may wait until the client has
	// read earlier replies. False once the connection is closed.
	Reply(frame []byte) bool
	// Hold makes frames queued until Release go out together (an ack and its message).
	Hold()
	Release()
	// Write writes a frame now, outside the queue: the welcome and the replay.
	Write(frame []byte) error
	// Close closes the connection with a WebSocket close code (package wire) and
	// stops the chat calls made on its behalf.
	Close(code int, reason string)
}

// Defaults for zero Options values.
const (
	DefaultStoreTimeout = 10 * time.Second
	DefaultRecheck      = 5 * time.Second
	// DefaultThrottleMax is how long a client may stay over its rate before frames
	// are refused with rate_limited instead of slowed (see limiter).
	DefaultThrottleMax = time.Minute
	// endTimeout bounds asking for the transcript export when a chat ends: the
	// session row is the durable record, and the sweeper asks again.
	endTimeout = 2 * time.Second
)

// Options are what the chat layer needs; Rooms holds them for every connection.
type Options struct {
	Sessions chat.SessionStore
	Messages chat.MessageStore
	Presence chat.Presence // may be nil: nobody is shown online
	Receipts chat.Receipts // may be nil: no receipts are kept, and welcomes carry none
	Queue    chat.Queue    // may be nil: no transcript export is asked for
	Hub      *hub.Hub
	Logger   *slog.Logger
	Metrics  *metrics.Metrics // may be nil

	MaxText    int     // the longest message, in characters (chat.DefaultMaxText)
	RatePerSec float64 // messages per second per connection, and the burst
	RateBurst  int
	// ThrottleMax: a client continuously over its rate this long gets refusals.
	ThrottleMax time.Duration
	// StoreTimeout bounds the store calls of one frame; a store that takes longer
	// closes the connection with 1013 (try again later).
	StoreTimeout time.Duration
	// Recheck is how long a connection trusts its copy of the session row (sessionRecheck).
	Recheck time.Duration
	// Window is how many frames a connection's queue can take at once (hub.Join.Window).
	Window int
}

// Rooms is the chat layer of one replica.
type Rooms struct {
	o   Options
	log *slog.Logger
	// trustRow: a connection's copy of its session row, once both people are in it,
	// needs no re-reading every Recheck (peerForSend): no ended event can be lost (the
	// bus is in-process), or the message store refuses messages after the end itself.
	trustRow bool
}

// New returns the chat layer, filling defaults for zero Options.
func New(o Options) *Rooms {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	chat.SetDefault(&o.MaxText, chat.DefaultMaxText)
	chat.SetDefault(&o.RatePerSec, 20)
	chat.SetDefault(&o.RateBurst, 40)
	chat.SetDefault(&o.ThrottleMax, DefaultThrottleMax)
	chat.SetDefault(&o.StoreTimeout, DefaultStoreTimeout)
	chat.SetDefault(&o.Recheck, DefaultRecheck)
	chat.SetDefault(&o.Window, 16)
	r := &Rooms{o: o, log: o.Logger}
	_, endChecked := o.Messages.(chat.EndChecked)
	r.trustRow = endChecked || (o.Hub != nil && o.Hub.InProcess())
	if o.Hub != nil {
		o.Hub.SetStoreCheck(r.missedEvents)
	}
	return r
}

// missedEvents reads the session row for the hub's catch-ups (the broker was down or
// restarted empty): a chat ended on another replica meanwhile, or its transcript
// archived, is told to this replica's connections from the row, as the broker would
// have told them.
func (r *Rooms) missedEvents(ctx context.Context, id string) ([]chat.Event, error) {
	sess, err := r.o.Sessions.Session(ctx, id)
	if err != nil || !sess.Ended() {
		return nil, err
	}
	evs := []chat.Event{{Type: chat.EventEnded, Session: id, Frame: wire.Ended(sess.EndedBy)}}
	if sess.Status == chat.StatusCompleted && sess.ChatHistory != "" {
		evs = append(evs, chat.Event{Type: chat.EventTranscript, Session: id, Frame: wire.Transcript(sess.ChatHistory)})
	}
	return evs, nil
}

// Request is what a connection asks for: who (from the cookie), which room, where to
// resume, and which session to reattach to.
type Request struct {
	Email   string
	Room    string
	After   int64  // replay messages with seq > After
	Session string // reattach to this session, if the person is in it ("" for none)
}
