package hub

import (
	"context"
	"sync"
	"time"

	"parley/internal/chat"
)

// DefaultHealthCheck is how often the hub pings the broker.
const DefaultHealthCheck = 2 * time.Second

// brokerHealth pings the broker every few seconds. While the broker does not answer
// (a Redis that is down, or hung, which may never look disconnected to its client)
// or publishes fail, every session with local connections is read from the store on
// each check, so messages stored on other replicas reach this one's people within a
// check or two; when the broker answers again, one last catch-up runs. An in-process
// broker is not watched: it cannot fail this way.
type brokerHealth struct {
	h     *Hub
	b     chat.Broker
	every time.Duration

	mu   sync.Mutex
	down bool

	stop chan struct{}
	done chan struct{}
}

// pinger is the part of a broker that answers health checks.
type pinger interface{ Ping(context.Context) error }

func newBrokerHealth(h *Hub, b chat.Broker, every time.Duration) *brokerHealth {
	if every <= 0 {
		every = DefaultHealthCheck
	}
	w := &brokerHealth{h: h, b: b, every: every, stop: make(chan struct{}), done: make(chan struct{})}
	p, ok := b.(pinger)
	if _, instant := b.(InstantBroker); !ok || instant {
		close(w.done)
		return w
	}
	go w.run(p)
	return w
}

func (w *brokerHealth) run(p pinger) {
	defer close(w.done)
	chat.Every(w.stop, w.every, func() { w.check(p) })
}

// check pings the broker once: while it is down, local sessions are read from the
// store; once it answers, those that started without it subscribe.
func (w *brokerHealth) check(p pinger) {
	ctx, cancel := context.WithTimeout(w.h.ctx, min(w.every, PresenceTimeout))
	err := p.Ping(ctx)
	cancel()
	down := err != nil
	if w.h.pub.recent.Swap(false) {
		down = true
	}
	w.set(down, err)
	if down {
		w.h.catchUp()
		return
	}
	w.h.resubscribe()
}

// set records the broker's state, logging and counting changes; the first check
// that finds it healthy again runs a catch-up.
func (w *brokerHealth) set(down bool, err error) {
	w.mu.Lock()
	was := w.down
	w.down = down
	w.mu.Unlock()
	if was == down {
		return
	}
	w.h.opts.Metrics.BrokerDown(down)
	if down {
		w.h.log.Warn("the broker does not answer; reading chats from the store meanwhile", "err", err)
		return
	}
	w.h.log.Info("the broker answers again")
	w.h.catchUp()
}

// BrokerDown reports whether the broker failed its last health check, or a publish
// failed before it.
func (h *Hub) BrokerDown() bool {
	h.healthy.mu.Lock()
	defer h.healthy.mu.Unlock()
	return h.healthy.down
}

// resubscribe subscribes the sessions that started while the broker did not answer;
// those it cannot are read from the store meanwhile.
func (h *Hub) resubscribe() {
	for _, s := range h.sessionList() {
		if !s.resubscribe() {
			go s.catchUp()
		}
	}
}

func (w *brokerHealth) close() {
	select {
	case <-w.stop:
	default:
		close(w.stop)
	}
	<-w.done
}
