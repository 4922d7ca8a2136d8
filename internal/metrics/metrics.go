// Package metrics is Parley's Prometheus instrumentation: the numbers an operator
// watches (connections, rooms, messages stored and delivered, the store's group
// commits, slow clients dropped, refusals) plus process and Go runtime memory, served
// at /metrics. Every method is safe on a nil *Metrics, so components take an optional
// *Metrics and call it without branching, and each call is a pre-resolved atomic add:
// nothing on the per-message path looks up labels or allocates.
package metrics

import (
	"net/http"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Refusal reasons with a pre-resolved counter. They are the contract's error codes
// plus the HTTP refusals of the WebSocket endpoint; any other reason is counted as
// ReasonOther, so a bug cannot grow the label set without bound.
const (
	ReasonRateLimited  = "rate_limited"
	ReasonRoomFull     = "room_full"
	ReasonTooLong      = "too_long"
	ReasonEmpty        = "empty"
	ReasonInvalidFrame = "invalid_frame"
	ReasonChatEnded    = "chat_ended"
	ReasonNotAllowed   = "not_allowed"
	ReasonNoChat       = "no_chat"      // a WebSocket to a room where the person has no chat (closed 1000)
	ReasonUnauthorized = "unauthorized" // WebSocket without a valid cookie (401)
	ReasonBadOrigin    = "bad_origin"   // WebSocket with a foreign Origin (403)
	ReasonOther        = "other"

	// Abuse limits and sign-in refusals (package web, limits.go and signin.go).
	ReasonSignInLimited = "signin_limited" // too many sign-in emails per address or client
	ReasonJoinLimited   = "join_limited"   // too many join form posts per client
	ReasonConnLimited   = "conn_limited"   // too many WebSockets per person
	ReasonBadSignIn     = "bad_signin"     // a sign-in link that is malformed, used or expired
	ReasonCrossSite     = "cross_site"     // a state-changing request from another site
	ReasonServerFull    = "server_full"    // a connection beyond PARLEY_MAX_CONNS (503)
)

var knownReasons = []string{
	ReasonRateLimited, ReasonRoomFull, ReasonTooLong, ReasonEmpty, ReasonInvalidFrame,
	ReasonChatEnded, ReasonNotAllowed, ReasonUnauthorized, ReasonBadOrigin, ReasonOther,
	ReasonSignInLimited, ReasonJoinLimited, ReasonConnLimited, ReasonBadSignIn, ReasonCrossSite,
	ReasonServerFull, ReasonNoChat,
}

// Metrics holds Parley's collectors. Build it once with New and pass it to the
// components; a nil *Metrics records nothing.
type Metrics struct {
	connections   prometheus.Gauge
	rooms         prometheus.GaugeFunc
	roomCount     atomic.Int64               // RoomOpened − RoomClosed
	roomsFrom     atomic.Pointer[func() int] // CountRoomsWith's source, read at scrape time
	stored        prometheus.Counter
	delivered     prometheus.Counter
	drops         prometheus.Counter
	batchSize     prometheus.Histogram
	commitSeconds prometheus.Histogram
	mergeSeconds  prometheus.Histogram
	refusals      map[string]prometheus.Counter // read-only after New
	publishes     *prometheus.CounterVec        // broker publishes that did not happen, by outcome
	throttled     prometheus.Counter
	brokerDown    prometheus.Gauge
}

// New builds the collectors and registers them, with the process and Go runtime
// collectors, on reg (a fresh prometheus.NewRegistry() in production, so tests can
// build several). A nil reg registers nothing. It panics if reg already holds
// collectors of the same names, as prometheus.MustRegister does.
func New(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		connections: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "parley_connections", Help: "Open WebSocket connections on this replica."}),
		stored: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "parley_messages_stored_total", Help: "Messages durably stored (acked to their senders)."}),
		delivered: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "parley_messages_delivered_total", Help: "Message frames queued to connections on this replica."}),
		drops: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "parley_send_queue_drops_total", Help: "Connections closed because their send queue was full (slow clients)."}),
		batchSize: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "parley_store_batch_size", Help: "Messages per commit of the message store: a group commit (MariaDB), one message log write (SQLite; one in 16 is sampled).",
			Buckets: prometheus.ExponentialBuckets(1, 2, 11)}), // 1 … 1024
		commitSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "parley_store_commit_seconds", Help: "Time of one commit of the message store, until its messages are durable (SQLite: one message log write in 16 is sampled).",
			Buckets: prometheus.ExponentialBuckets(50e-6, 2, 16)}), // 50 µs … 1.6 s
		mergeSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "parley_store_log_merge_seconds", Help: "Time of one merge of pending SQLite messages into message_chunks (beside the appends, which go to the message log).",
			Buckets: prometheus.ExponentialBuckets(100e-6, 2, 14)}), // 100 µs … 0.8 s
		refusals: make(map[string]prometheus.Counter, len(knownReasons)),
		publishes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "parley_broker_publish_lost_total", Help: "Events not published to the broker, by outcome (failed: error or timeout; dropped: the publish queue was full). Other replicas catch up on messages from the store."}, []string{"outcome"}),
		throttled: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "parley_frames_throttled_total", Help: "Client frames that waited for the per-connection rate limit (the client was slowed, not refused)."}),
		brokerDown: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "parley_broker_down", Help: "1 while this replica's broker does not answer its health check (messages are then read from the store)."}),
	}
	m.rooms = prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "parley_rooms", Help: "Chat sessions with at least one connection on this replica."}, m.roomsNow)
	refusals := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "parley_refusals_total", Help: "Requests and frames refused, by reason."}, []string{"reason"})
	for _, r := range knownReasons {
		m.refusals[r] = refusals.WithLabelValues(r)
	}
	if reg != nil {
		reg.MustRegister(m.connections, m.rooms, m.stored, m.delivered, m.drops,
			m.batchSize, m.commitSeconds, m.mergeSeconds, refusals, m.publishes, m.throttled, m.brokerDown,
			collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
			collectors.NewGoCollector())
	}
	return m
}

// Handler serves the metrics gathered by g (the registry given to New) in the
// Prometheus text format, for GET /metrics.
func Handler(g prometheus.Gatherer) http.Handler {
	return promhttp.HandlerFor(g, promhttp.HandlerOpts{})
}

// ConnOpened counts a WebSocket accepted on this replica.
func (m *Metrics) ConnOpened() {
	if m != nil {
		m.connections.Inc()
	}
}

// ConnClosed counts a WebSocket gone, for whatever reason.
func (m *Metrics) ConnClosed() {
	if m != nil {
		m.connections.Dec()
	}
}

// CountRoomsWith makes parley_rooms read count (such as the hub's Sessions) at
// scrape time, which costs the message path nothing. Without it, parley_rooms is
// RoomOpened minus RoomClosed.
func (m *Metrics) CountRoomsWith(count func() int) {
	if m != nil && count != nil {
		m.roomsFrom.Store(&count)
	}
}

func (m *Metrics) roomsNow() float64 {
	if f := m.roomsFrom.Load(); f != nil {
		return float64((*f)())
	}
	return float64(m.roomCount.Load())
}

// RoomOpened counts a session that got its first connection on this replica.
func (m *Metrics) RoomOpened() {
	if m != nil {
		m.roomCount.Add(1)
	}
}

// RoomClosed counts a session whose last connection on this replica closed.
func (m *Metrics) RoomClosed() {
	if m != nil {
		m.roomCount.Add(-1)
	}
}

// Stored counts n messages durably stored.
func (m *Metrics) Stored(n int) {
	if m != nil && n > 0 {
		m.stored.Add(float64(n))
	}
}

// Delivered counts n message frames queued to connections.
func (m *Metrics) Delivered(n int) {
	if m != nil && n > 0 {
		m.delivered.Add(float64(n))
	}
}

// SendQueueDropped counts a slow connection closed because its send queue was full.
func (m *Metrics) SendQueueDropped() {
	if m != nil {
		m.drops.Inc()
	}
}

// PublishFailed counts a broker publish that failed or timed out.
func (m *Metrics) PublishFailed() {
	if m != nil {
		m.publishes.WithLabelValues("failed").Inc()
	}
}

// PublishDropped counts an event dropped because the publish queue was full.
func (m *Metrics) PublishDropped() {
	if m != nil {
		m.publishes.WithLabelValues("dropped").Inc()
	}
}

// Throttled counts a client frame that waited for the rate limit.
func (m *Metrics) Throttled() {
	if m != nil {
		m.throttled.Inc()
	}
}

// BrokerDown records whether the broker fails its health check.
func (m *Metrics) BrokerDown(down bool) {
	if m != nil {
		v := 0.0
		if down {
			v = 1
		}
		m.brokerDown.Set(v)
	}
}

// StoreCommitted records one group commit of size messages that took d.
func (m *Metrics) StoreCommitted(size int, d time.Duration) {
	if m != nil {
		m.batchSize.Observe(float64(size))
		m.commitSeconds.Observe(d.Seconds())
	}
}

// StoreMerged records one merge of pending SQLite messages (sqlstore/pending.go) that took d.
func (m *Metrics) StoreMerged(d time.Duration) {
	if m != nil {
		m.mergeSeconds.Observe(d.Seconds())
	}
}

// Refused counts a refusal by reason (an error code such as chat.ERateLimited, or
// one of the Reason constants). Unknown reasons are counted as ReasonOther.
func (m *Metrics) Refused(reason string) {
	if m == nil {
		return
	}
	c, ok := m.refusals[reason]
	if !ok {
		c = m.refusals[ReasonOther]
	}
	c.Inc()
}
