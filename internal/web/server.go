// Package web is Parley's HTTP face: the pages, the WebSocket endpoint through which
// two people chat, transcripts, health checks and the development mail viewer. It
// turns HTTP and WebSocket frames into calls on the domain interfaces of package chat,
// so every backend combination is served by the same code.
package web

import (
	"context"
	"crypto/rand"
	"log/slog"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"time"

	"parley/internal/chat"
	"parley/internal/hub"
	"parley/internal/metrics"
	"parley/internal/room"
	"parley/internal/wire"
)

// Defaults for zero Config values. They are the contract's limits (4000 characters,
// 16 KiB frames) and what keeps one connection from costing the server much.
const (
	DefaultReadLimit    = 16 << 10
	DefaultRatePerSec   = 20
	DefaultRateBurst    = 40
	DefaultPingInterval = 25 * time.Second
	DefaultIdleTimeout  = 60 * time.Second
	DefaultSendQueue    = 256
	defaultPublicURL    = "http://127.0.0.1:8080"
)

// Config is what the web server needs to know about where and how it runs. Zero
// values are replaced by defaults in NewServer.
type Config struct {
	PublicURL      string        // scheme://host[:port] people reach; Origin check and absolute links
	AllowedOrigins []string      // extra allowed Origins (besides PublicURL's): "host[:port]" or "scheme://host[:port]", path.Match patterns
	Dev            bool          // development mode: /dev/mail is served
	AdminEmails    []string      // may see anyone's history/transcripts
	MaxText        int           // max message characters (4000)
	ReadLimit      int64         // WebSocket frame read limit (16 KiB)
	RatePerSec     float64       // per-connection message rate (20/s)
	RateBurst      int           // (40)
	PingInterval   time.Duration // ping period; a connection silent for IdleTimeout is closed
	IdleTimeout    time.Duration
	SendQueue      int      // per-connection bounded send queue length
	CookieKey      []byte   // HMAC key for the session cookie
	OutboxDir      string   // where the embedded mailer writes .eml files (for /dev/mail)
	Auth           string   // AuthEmailLink (default: sign in by emailed link) or AuthTrust (the typed email is believed)
	Limits         Limits   // abuse limits per address, client and person (limits.go)
	TrustedProxies []string // IPs/CIDRs of reverse proxies whose X-Forwarded-For names the client
	// PresenceCheck is how often peers' presence is re-read, so a peer whose replica
	// died is shown offline once its presence expires (5s; negative: never).
	PresenceCheck time.Duration
}

// Deps are the backends the server talks to, chosen and built by package cli. Archive
// may be nil when transcripts are not served by this process.
type Deps struct {
	Config   Config
	Sessions chat.SessionStore
	Messages chat.MessageStore
	Broker   chat.Broker
	Presence chat.Presence
	Queue    chat.Queue
	Archive  chat.Archive
	Logger   *slog.Logger
	Mailer   chat.Mailer      // sends sign-in emails (email-link sign-in)
	SignIns  chat.SignInStore // pending sign-in links (email-link sign-in)
	// Logins keeps sign-ins server-side, so sign-out ends a cookie at once. Without
	// one, sign-ins live in this process only (tests; a single replica that may
	// forget them on restart).
	Logins  chat.LoginStore
	People  chat.PeopleStore // each person's time zone; nil shows every time in UTC
	Metrics *metrics.Metrics // may be nil
}

// Server is Parley's http.Handler. It holds no chat state of its own beyond this
// replica's open WebSockets (in the hub); everything else lives in the stores, so any
// replica can serve any request.
type Server struct {
	cfg      Config
	sessions chat.SessionStore
	messages chat.MessageStore
	broker   chat.Broker
	presence chat.Presence
	queue    chat.Queue
	archive  chat.Archive
	log      *slog.Logger
	mailer   chat.Mailer
	signIns  chat.SignInStore
	people   chat.PeopleStore
	metrics  *metrics.Metrics
	limits   limiters
	proxies  []netip.Prefix
	now      func() time.Time // the clock of sign-in links and limits

	auth    authenticator
	hub     *hub.Hub
	rooms   *room.Rooms
	admins  map[string]bool
	public  *url.URL
	handler http.Handler

	connMu   sync.Mutex
	conns    map[*wsConn]struct{} // open WebSockets, closed by Shutdown
	closing  bool
	connWG   sync.WaitGroup
	shutOnce sync.Once
}

// NewServer builds the handler with its routes, filling defaults for zero Config values.
func NewServer(d Deps) *Server {
	cfg := withDefaults(d.Config)
	log := d.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if len(d.Config.CookieKey) == 0 {
		log.Warn("no cookie key configured; using a random one, so sign-ins do not survive a restart")
	}
	s := &Server{
		cfg: cfg, sessions: d.Sessions, messages: d.Messages, broker: d.Broker,
		presence: d.Presence, queue: d.Queue, archive: d.Archive, log: log, people: d.People,
		admins: make(map[string]bool), conns: make(map[*wsConn]struct{}),
	}
	s.public, _ = url.Parse(cfg.PublicURL)
	if s.public == nil {
		s.public = &url.URL{Scheme: "http", Host: "127.0.0.1:8080"}
	}
	for _, e := range cfg.AdminEmails {
		if n, err := chat.NormalizeEmail(e); err == nil {
			s.admins[n] = true
		}
	}
	logins := d.Logins
	if logins == nil {
		logins = newMemLogins()
	}
	s.auth = newLoginAuth(cfg.CookieKey, s.public.Scheme == "https", logins, func() time.Time { return s.now() }, log)
	s.setupSecurity(d)
	s.hub = hub.New(hub.Options{Messages: d.Messages, Broker: d.Broker, Logger: log,
		Encode: wire.Message, Metrics: d.Metrics, Presence: d.Presence, PresenceCheck: cfg.PresenceCheck})
	receipts, _ := d.Sessions.(chat.Receipts) // the SQL session stores keep receipt cursors
	s.rooms = room.New(room.Options{Sessions: d.Sessions, Messages: d.Messages, Presence: d.Presence,
		Receipts: receipts, Queue: d.Queue, Hub: s.hub, Logger: log, Metrics: d.Metrics, MaxText: cfg.MaxText,
		RatePerSec: cfg.RatePerSec, RateBurst: cfg.RateBurst, Window: max(1, cfg.SendQueue/2)})
	d.Metrics.CountRoomsWith(s.hub.Sessions)
	s.handler = s.secureHeaders(s.routes())
	return s
}

// ValidateTrustedProxies checks Config.TrustedProxies as NewServer will read them
// (IP addresses or CIDR prefixes), so that a command line can refuse a bad list at
// start instead of serving without it.
func ValidateTrustedProxies(list []string) error {
	_, err := parseProxies(list)
	return err
}

// withDefaults returns cfg with every zero value replaced by its default.
func withDefaults(cfg Config) Config {
	if cfg.PublicURL == "" {
		cfg.PublicURL = defaultPublicURL
	}
	cfg.PublicURL = strings.TrimRight(cfg.PublicURL, "/")
	chat.SetDefault(&cfg.MaxText, chat.DefaultMaxText)
	chat.SetDefault(&cfg.ReadLimit, DefaultReadLimit)
	chat.SetDefault(&cfg.RatePerSec, DefaultRatePerSec)
	chat.SetDefault(&cfg.RateBurst, DefaultRateBurst)
	chat.SetDefault(&cfg.PingInterval, DefaultPingInterval)
	chat.SetDefault(&cfg.IdleTimeout, DefaultIdleTimeout)
	chat.SetDefault(&cfg.SendQueue, DefaultSendQueue)
	if cfg.PresenceCheck == 0 {
		cfg.PresenceCheck = hub.DefaultPresenceCheck
	}
	if len(cfg.CookieKey) == 0 {
		cfg.CookieKey = make([]byte, 32)
		_, _ = rand.Read(cfg.CookieKey)
	}
	return cfg
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.handler.ServeHTTP(w, r)
}

// Shutdown closes every WebSocket with StatusGoingAway, so clients reconnect to another
// replica, and waits for their goroutines (http.Server.Shutdown does not wait for
// hijacked connections). New WebSockets are refused from then on.
func (s *Server) Shutdown(ctx context.Context) error {
	s.connMu.Lock()
	s.closing = true
	open := make([]*wsConn, 0, len(s.conns))
	for c := range s.conns {
		open = append(open, c)
	}
	s.connMu.Unlock()
	for _, c := range open {
		go c.goAway() // each close handshake may take seconds; run them side by side
	}
	done := make(chan struct{})
	go func() { s.connWG.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		return ctx.Err()
	}
	return s.hub.Close()
}

// closeConnsOf closes email's WebSockets on this replica with "going away": their
// pages reconnect, and find the person signed out.
func (s *Server) closeConnsOf(email string) {
	s.connMu.Lock()
	defer s.connMu.Unlock()
	for c := range s.conns {
		if c.req.email == email {
			go c.goAway()
		}
	}
}

// Close shuts the server down, giving WebSockets a few seconds to close.
func (s *Server) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return s.Shutdown(ctx)
}

// Rooms returns how many chat sessions have connections on this replica (for metrics;
// cheap enough to read at scrape time).
func (s *Server) Rooms() int { return s.hub.Sessions() }

// isAdmin reports whether email may see anyone's history and transcripts.
func (s *Server) isAdmin(email string) bool { return email != "" && s.admins[email] }

// absoluteURL turns a path on this site into a link people can follow from an email.
func (s *Server) absoluteURL(path string) string { return s.cfg.PublicURL + path }

// secureHeaders sets the headers every response carries: no inline script, no framing,
// no content sniffing, no referrer leaking room names to other sites.
func (s *Server) secureHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", "default-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "same-origin")
		next.ServeHTTP(w, r)
	})
}
