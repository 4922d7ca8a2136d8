package transcript

import (
	"context"
	"log/slog"
	"time"

	"parley/internal/chat"
)

// DefaultSweepInterval is how often the Sweeper looks for unfinished exports.
const DefaultSweepInterval = 2 * time.Minute

// sweepLimit bounds one sweep; the next sweep takes the rest.
const sweepLimit = 1000

// SweeperOptions configure a Sweeper.
type SweeperOptions struct {
	Sessions chat.SessionStore
	Queue    chat.Queue
	Interval time.Duration // DefaultSweepInterval when zero
	Logger   *slog.Logger
}

// Sweeper makes export work durable without trusting the queue: the session row in
// StatusEnding is the record of work to do, and the Sweeper enqueues every such
// session at start and then every Interval. Enqueues are keyed by session id, so
// enqueueing a session that is already pending is harmless.
type Sweeper struct {
	o   SweeperOptions
	log *slog.Logger
}

// NewSweeper returns a Sweeper; Sessions and Queue are required.
func NewSweeper(o SweeperOptions) (*Sweeper, error) {
	if o.Sessions == nil || o.Queue == nil {
		return nil, chat.Errorf(chat.EInvalid, "transcript: sweeper needs sessions and a queue")
	}
	if o.Interval <= 0 {
		o.Interval = DefaultSweepInterval
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return &Sweeper{o: o, log: o.Logger}, nil
}

// Run sweeps now and then every Interval until ctx is done; it returns nil then.
// Failed sweeps are logged and tried again at the next tick.
func (w *Sweeper) Run(ctx context.Context) error {
	t := time.NewTicker(w.o.Interval)
	defer t.Stop()
	for {
		if _, err := w.Sweep(ctx); err != nil && ctx.Err() == nil {
			w.log.Warn("sweep for unfinished exports failed", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Sweep enqueues the export of every session still ending and returns how many.
func (w *Sweeper) Sweep(ctx context.Context) (int, error) {
	ending, err := w.o.Sessions.SessionsEnding(ctx, sweepLimit)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, s := range ending {
		if err := w.o.Queue.EnqueueExport(ctx, s.ID); err != nil {
			return n, err
		}
		n++
	}
	if n > 0 {
		w.log.Info("enqueued unfinished exports", "sessions", n)
	}
	return n, nil
}
