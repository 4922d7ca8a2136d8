package hub

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"parley/internal/chat"
	"parley/internal/membus"
	"parley/internal/metrics"
)

// batchBroker records what the publish queue hands it. Its first Publish waits for
// release, so that events pile up behind it; PublishBatch fails while fail is set.
type batchBroker struct {
	deadBroker
	release chan struct{}
	mu      sync.Mutex
	calls   [][]int64 // the seqs of each call, in order
	fail    bool
}

func (b *batchBroker) Publish(ctx context.Context, ev chat.Event) error {
	b.mu.Lock()
	first := len(b.calls) == 0
	b.calls = append(b.calls, []int64{ev.Seq})
	fail := b.fail
	b.mu.Unlock()
	if first {
		<-b.release
	}
	if fail {
		return errors.New("redis is down")
	}
	return nil
}

func (b *batchBroker) PublishBatch(ctx context.Context, evs []chat.Event) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	seqs := make([]int64, len(evs))
	for i, ev := range evs {
		seqs[i] = ev.Seq
	}
	b.calls = append(b.calls, seqs)
	if b.fail {
		return errors.New("redis is down")
	}
	return nil
}

func (b *batchBroker) snapshot() [][]int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([][]int64(nil), b.calls...)
}

// TestPublishQueueBatches: events that wait while the broker is busy leave together,
// in their order, in one round trip; when that round trip fails, each of its events
// is counted as lost.
func TestPublishQueueBatches(t *testing.T) {
	reg := prometheus.NewRegistry()
	b := &batchBroker{release: make(chan struct{})}
	p := newPublisher(b, slog.New(slog.DiscardHandler), metrics.New(reg), time.Second, 1024)
	ev := func(seq int64) chat.Event { return chat.Event{Type: chat.EventMessage, Session: "s", Seq: seq} }
	p.publish(ev(1))
	waitFor(t, "the first publish to start", func() bool { return len(b.snapshot()) == 1 })
	for seq := int64(2); seq <= 40; seq++ {
		p.publish(ev(seq))
	}
	close(b.release)
	waitFor(t, "the waiting events to go", func() bool { return len(b.snapshot()) == 2 })
	got := b.snapshot()
	if len(got[0]) != 1 || got[0][0] != 1 || len(got[1]) != 39 {
		t.Fatalf("publish calls %v: want [1] then the 39 that waited in one batch", got)
	}
	for i, seq := range got[1] {
		if seq != int64(i+2) {
			t.Fatalf("batch out of order: %v", got[1])
		}
	}

	// The broker fails now. Held while five events are queued: the first goes alone
	// and waits, the other four wait behind it and fail together, counted as four.
	b.mu.Lock()
	b.fail = true
	for seq := int64(41); seq <= 45; seq++ {
		p.publish(ev(seq))
	}
	b.mu.Unlock()
	p.close()
	if n := publishLost(t, reg); n != 5 {
		t.Fatalf("%v events counted as lost after %v, want 5", n, b.snapshot()[2:])
	}
}

// publishLost reads parley_broker_publish_lost_total{outcome="failed"}.
func publishLost(t *testing.T, reg *prometheus.Registry) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != "parley_broker_publish_lost_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "outcome" && l.GetValue() == "failed" {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

var _ SharedBroker = (*membus.Bus)(nil)
