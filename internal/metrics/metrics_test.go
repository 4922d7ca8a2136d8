package metrics

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestMetricsCount(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := New(reg)
	m.ConnOpened()
	m.ConnOpened()
	m.ConnClosed()
	m.RoomOpened()
	m.Stored(3)
	m.Stored(0)
	m.Delivered(6)
	m.SendQueueDropped()
	m.StoreCommitted(3, 2*time.Millisecond)
	m.Refused(ReasonRateLimited)
	m.Refused("room_full")
	m.Refused("no_chat")
	m.Refused("no-such-reason")

	tests := []struct {
		name string
		c    prometheus.Collector
		want float64
	}{
		{"connections", m.connections, 1},
		{"rooms", m.rooms, 1},
		{"stored", m.stored, 3},
		{"delivered", m.delivered, 6},
		{"drops", m.drops, 1},
		{"rate_limited", m.refusals[ReasonRateLimited], 1},
		{"room_full", m.refusals[ReasonRoomFull], 1},
		{"no_chat", m.refusals[ReasonNoChat], 1},
		{"other", m.refusals[ReasonOther], 1},
		{"too_long", m.refusals[ReasonTooLong], 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := testutil.ToFloat64(tt.c); got != tt.want {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
	m.CountRoomsWith(func() int { return 7 })
	if got := testutil.ToFloat64(m.rooms); got != 7 {
		t.Errorf("rooms from the hub's count = %v, want 7", got)
	}
	if n := testutil.CollectAndCount(m.batchSize); n != 1 {
		t.Errorf("batch size histogram: %d series", n)
	}
}

// TestNilMetrics: a nil *Metrics is a no-op, so components need no branches.
func TestNilMetrics(t *testing.T) {
	var m *Metrics
	m.ConnOpened()
	m.ConnClosed()
	m.RoomOpened()
	m.RoomClosed()
	m.CountRoomsWith(func() int { return 1 })
	m.Stored(1)
	m.Delivered(1)
	m.SendQueueDropped()
	m.StoreCommitted(1, time.Millisecond)
	m.Refused(ReasonEmpty)
}

// TestNilRegistry: New(nil) builds working collectors that nobody exports.
func TestNilRegistry(t *testing.T) {
	m := New(nil)
	m.Delivered(2)
	if got := testutil.ToFloat64(m.delivered); got != 2 {
		t.Errorf("delivered = %v", got)
	}
}

// TestHandler: /metrics serves Parley's series and the memory figures that
// `parley bench idle` reads.
func TestHandler(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := New(reg)
	m.ConnOpened()
	m.Refused(ReasonTooLong)
	srv := httptest.NewServer(Handler(reg))
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	body := string(b)
	for _, want := range []string{
		"parley_connections 1",
		`parley_refusals_total{reason="too_long"} 1`,
		"parley_messages_stored_total 0",
		"parley_messages_delivered_total 0",
		"parley_send_queue_drops_total 0",
		"parley_store_batch_size_bucket",
		"parley_store_commit_seconds_bucket",
		"parley_rooms 0",
		"process_resident_memory_bytes ",
		"go_memstats_heap_inuse_bytes ",
		"go_goroutines ",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}

// BenchmarkHotPath: the per-message calls cost an atomic add and allocate nothing.
func BenchmarkHotPath(b *testing.B) {
	m := New(prometheus.NewRegistry())
	b.ReportAllocs()
	for b.Loop() {
		m.Delivered(2)
		m.Stored(1)
		m.Refused(ReasonRateLimited)
	}
}
