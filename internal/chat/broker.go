package chat

import "context"

// EventType names what an Event carries.
type EventType uint8

// Event types carried between replicas. Each maps to one server frame of the protocol.
const (
	EventMessage    EventType = iota + 1 // a stored message
	EventPresence                        // someone's connection state changed
	EventEnded                           // the chat was ended
	EventTranscript                      // the transcript is archived and emailed
	EventTyping                          // Email is typing: for the other person's connections only
	EventReceipt                         // Email's receipt cursors advanced (never stored as a message)
)

// Event is something every connection to a session must hear about. Frame is the
// server frame already encoded as JSON, so a message is encoded once per session, not
// once per connection; Seq (message events) lets a receiver drop what it already has
// and notice what it missed.
type Event struct {
	Type    EventType
	Session string
	Seq     int64  // message events; typing events: a stamp, so a replica drops its own echo
	Email   string // presence, typing and receipt events: whose state or signal it is
	Online  bool   // presence events
	Frame   []byte // the JSON frame to send to clients; shared, never modified
}

// Broker carries events between the replicas serving a session's connections.
// Delivery is at most once and in publish order per session: a replica that was cut
// off misses what was published meanwhile, and catches up from the MessageStore by seq
// (OnReconnect tells it when). The in-process broker never loses anything.
type Broker interface {
	// Subscribe calls fn for every event published for sessionID after Subscribe
	// returns, in order, from one goroutine per subscription. fn must not block.
	// The returned cancel stops delivery; calling it twice is harmless.
	Subscribe(ctx context.Context, sessionID string, fn func(Event)) (cancel func(), err error)

	// Publish sends ev to every subscriber of ev.Session on every replica.
	Publish(ctx context.Context, ev Event) error

	// OnReconnect registers fn to be called after the broker regains a connection it
	// had lost, so subscribers can catch up on what they may have missed.
	OnReconnect(fn func())

	// Ping reports whether the broker's backend can be reached (for /readyz).
	Ping(ctx context.Context) error

	Close() error
}

// Presence counts each person's open connections to a session across all replicas, so
// each side can be told whether the other is online. Counts held by a replica that
// dies expire on their own.
type Presence interface {
	// Connected records a new connection of email to the session and reports whether
	// email was offline before it (the first connection anywhere).
	Connected(ctx context.Context, sessionID, email string) (wentOnline bool, err error)

	// Disconnected records that a connection closed and reports whether email now has
	// no connection anywhere.
	Disconnected(ctx context.Context, sessionID, email string) (wentOffline bool, err error)

	// Online reports whether email has at least one connection to the session.
	Online(ctx context.Context, sessionID, email string) (bool, error)
}
