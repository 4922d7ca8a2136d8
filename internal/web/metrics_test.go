package web

import (
	"context"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"parley/internal/chat"
	"parley/internal/membus"
	"parley/internal/metrics"
	"parley/internal/sqlstore"
	"parley/internal/wire"
)

// TestMetricsOfAChat: after a short chat the registry shows the open connections,
// the room, the stored and delivered messages, the store's commits and a refusal.
func TestMetricsOfAChat(t *testing.T) {
	e := newWSEnv(t, Config{})
	e.stop() // rebuilt below with metrics; the cleanup stops this one
	reg := prometheus.NewRegistry()
	m := metrics.New(reg)
	store, err := sqlstore.OpenSQLite(context.Background(), e.dbPath, nil)
	if err != nil {
		t.Fatal(err)
	}
	store.SetMetrics(m)
	e.store = store
	e.srv = NewServer(Deps{Config: e.cfg, Sessions: store, Messages: store, Broker: membus.New(),
		Presence: membus.NewPresence(), Queue: e.queue, Logger: testLogger(t), Metrics: m})
	e.ts.Config.Handler = e.srv

	host, guest, _ := e.enterBoth("m1")
	host.send("h-1", "hello")
	host.expect(wire.TypeAck)
	guest.messages(1)
	guest.sendJSON(`{"type":"shout"}`)
	guest.skipTo(wire.TypeError)

	waitFor(t, "the message to be counted as delivered", func() bool {
		return value(t, reg, "parley_messages_delivered_total") >= 2 // to the host and the guest
	})
	for _, c := range []struct {
		name string
		want float64
	}{
		{"parley_connections", 2},
		{"parley_rooms", 1},
		{"parley_messages_stored_total", 1},
		{"parley_store_batch_size", 1}, // sample count: one commit
	} {
		if got := value(t, reg, c.name); got != c.want {
			t.Errorf("%s = %v, want %v", c.name, got, c.want)
		}
	}
	if got := refusals(t, reg, chat.EInvalidFrame); got != 1 {
		t.Errorf("invalid_frame refusals = %v, want 1", got)
	}
	host.ws.CloseNow()
	guest.ws.CloseNow()
	waitFor(t, "the connections to be counted as closed", func() bool {
		return value(t, reg, "parley_connections") == 0
	})
}

// value returns a gauge's or counter's value, or a histogram's sample count.
func value(t *testing.T, g prometheus.Gatherer, name string) float64 {
	t.Helper()
	for _, mf := range gather(t, g) {
		if mf.GetName() != name || len(mf.GetMetric()) == 0 {
			continue
		}
		m := mf.GetMetric()[0]
		switch {
		case m.Gauge != nil:
			return m.GetGauge().GetValue()
		case m.Counter != nil:
			return m.GetCounter().GetValue()
		case m.Histogram != nil:
			return float64(m.GetHistogram().GetSampleCount())
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}

// refusals returns parley_refusals_total for one reason.
func refusals(t *testing.T, g prometheus.Gatherer, reason string) float64 {
	t.Helper()
	for _, mf := range gather(t, g) {
		if mf.GetName() != "parley_refusals_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "reason" && l.GetValue() == reason {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

func gather(t *testing.T, g prometheus.Gatherer) []*dto.MetricFamily {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	return mfs
}
