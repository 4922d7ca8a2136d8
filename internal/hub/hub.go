// Package hub keeps this replica's chat sessions and the WebSocket connections open to
// them, and delivers each session's events to its connections: messages in seq order,
// exactly once, with no gap, whatever order the broker hands them over in.
package hub

import (
	"log/slog"

	"parley/internal/chat"
)

// Options are what a Hub needs.
type Options struct {
	Messages chat.MessageStore
	Broker   chat.Broker
	Logger   *slog.Logger
}

// Hub maps this replica's sessions to their connections.
type Hub struct{ opts Options }

// New returns a Hub.
func New(o Options) *Hub { return &Hub{opts: o} }

// Close stops every subscription.
func (h *Hub) Close() error { return nil }
