package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"parley/internal/chat"
	"parley/internal/memqueue"
	"parley/internal/metrics"
	"parley/internal/transcript"
	"parley/internal/web"
)

// shutdownGrace bounds how long a stopping server waits for requests and jobs.
const shutdownGrace = 15 * time.Second

// runServe serves the chat until ctx is cancelled (SIGINT/SIGTERM), then shuts down in
// order: stop accepting, close WebSockets with "going away", drain jobs, close stores.
func runServe(ctx context.Context, env *environment, args []string) error {
	c, _, err := loadConfig("serve", args, env.getenv, env.stderr)
	if err != nil {
		return err
	}
	log := newLogger(c, env.stderr)
	log.Info("parley starting", "version", Version, "addr", c.Addr, "public_url", c.PublicURL, "auth", c.Auth, "dev", c.DevMode())
	log.Debug("configuration", c.Masked()...) // secrets (DSN, URLs with passwords, cookie key) masked
	if c.Auth == "trust" {
		log.Warn("PARLEY_AUTH=trust: the typed email is believed, so anyone can join as anyone; use it only on closed networks and for benchmarks")
	}
	if c.Auth == "email-link" && c.DevMode() && !loopback(c.Addr) {
		log.Warn("development mode shows every sign-in link at /dev/mail to anyone who can reach " + c.Addr + "; set PARLEY_SMTP_URL (or PARLEY_DEV=false) before others can reach it")
	}
	p, err := openParts(ctx, c, log)
	if err != nil {
		return err
	}
	defer p.Close()
	queue, err := p.openServeQueue(ctx)
	if err != nil {
		return err
	}
	key, err := cookieKey(c)
	if err != nil {
		return err
	}
	signIns, _ := p.sessions.(chat.SignInStore) // every SQL session store keeps sign-in links
	if c.Auth == "email-link" && signIns == nil {
		return errors.New("PARLEY_AUTH=email-link needs a session store that keeps sign-in links (SQLite or MySQL)")
	}
	logins, ok := p.sessions.(chat.LoginStore) // every SQL session store keeps sign-ins
	if !ok {
		return errors.New("the session store does not keep sign-ins (SQLite or MySQL needed)")
	}
	srv := web.NewServer(web.Deps{
		Config:   p.webConfig(key),
		Sessions: p.sessions,
		Messages: p.messages,
		Broker:   p.broker,
		Presence: p.presence,
		Queue:    queue,
		Archive:  p.archive,
		Logger:   log,
		Mailer:   p.mailer,
		SignIns:  signIns,
		Logins:   logins,
		People:   people(p.sessions),
		Metrics:  p.metrics,
	})
	ln, err := net.Listen("tcp", c.Addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", c.Addr, err)
	}
	if c.DebugAddr != "" {
		stop, err := serveDebug(c.DebugAddr, log)
		if err != nil {
			return err
		}
		defer stop()
	}
	ln = limitConns(ln, c.MaxConns, p.metrics)
	return serveUntilDone(ctx, log, ln, c.BodyTimeout, withMetrics(srv, p.registry), srv)
}

// webConfig is the web server's part of the configuration.
func (p *parts) webConfig(cookieKey []byte) web.Config {
	c := p.cfg
	return web.Config{
		PublicURL:      c.PublicURL,
		AllowedOrigins: c.Origins,
		Dev:            c.DevMode(),
		AdminEmails:    c.AdminEmails,
		MaxText:        c.MaxText,
		ReadLimit:      c.ReadLimit,
		RatePerSec:     c.RatePerSec,
		RateBurst:      c.RateBurst,
		PingInterval:   c.PingInterval,
		IdleTimeout:    c.IdleTimeout,
		SendQueue:      c.SendQueue,
		PresenceCheck:  c.PresenceCheck,
		CookieKey:      cookieKey,
		OutboxDir:      p.outboxDir(),
		Auth:           c.Auth,
		TrustedProxies: c.Proxies,
		Limits:         c.webLimits(),
	}
}

// webLimits are the per-person and per-client limits. In development mode on a
// loopback address with no proxy in front, every client is this machine and sign-in
// emails stay in the local outbox, so the per-client-IP limits would only stop the
// developer (and `parley bench`, which signs in hundreds of people through the outbox):
// they are off there.
func (c Config) webLimits() web.Limits {
	l := web.Limits{SignInsPerEmail: c.SignInsPerEmail, SignInsPerIP: c.SignInsPerIP,
		JoinsPerMinute: c.JoinsPerMinute, ConnsPerPerson: c.ConnsPerPerson}
	if c.DevMode() && loopback(c.Addr) && len(c.Proxies) == 0 {
		l.SignInsPerIP, l.JoinsPerMinute = -1, -1
	}
	return l
}

// openServeQueue returns the queue `serve` enqueues exports on. Without Redis it is
// the in-process queue, which also runs the jobs and the nightly purge, plus the
// sweeper that re-enqueues unfinished exports; with Redis, `parley worker` runs them.
func (p *parts) openServeQueue(ctx context.Context) (chat.Queue, error) {
	if p.cfg.usesRedis() {
		return p.openAsynqClient(ctx)
	}
	q, err := p.openMemQueue(ctx)
	if err != nil {
		return nil, err
	}
	return q, p.startSweeper(ctx, q)
}

// openMemQueue starts the in-process job queue with the purge schedule.
func (p *parts) openMemQueue(ctx context.Context) (*memqueue.Queue, error) {
	q, err := memqueue.New(p.exporter, memqueue.Options{
		PurgeSchedule: p.cfg.PurgeSchedule,
		Location:      p.cfg.location(),
		Logger:        p.log,
	})
	if err != nil {
		return nil, fmt.Errorf("job queue: %w", err)
	}
	q.Start(ctx)
	p.onClose(q.Close)
	p.log.Info("backend", "part", "jobs", "uses", "in-process", "purge_schedule", p.cfg.PurgeSchedule, "tz", p.cfg.TZ)
	return q, nil
}

// startSweeper re-enqueues ended chats whose export is unfinished, now and every
// SweepInterval: the session row, not the queue, is the record of work to do.
func (p *parts) startSweeper(ctx context.Context, q chat.Queue) error {
	sw, err := transcript.NewSweeper(transcript.SweeperOptions{
		Sessions: p.sessions, Queue: q, Interval: p.cfg.SweepInterval, Logger: p.log,
	})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); _ = sw.Run(ctx) }()
	p.onClose(func() error { cancel(); <-done; return nil })
	return nil
}

// withMetrics serves Prometheus metrics at /metrics and everything else with h.
func withMetrics(h http.Handler, reg *prometheus.Registry) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", metrics.Handler(reg))
	mux.Handle("/", h)
	return mux
}

// serveUntilDone serves HTTP on ln until ctx ends or serving fails, then shuts down.
// A request whose headers and body have not arrived within bodyTimeout is cut: the
// connection's read deadline fails the read and net/http closes it. A WebSocket is
// exempt once open, since net/http clears the deadlines of a connection it hands
// over (hijacks); the WebSocket's pings and idle timeout take over from there.
func serveUntilDone(ctx context.Context, log *slog.Logger, ln net.Listener, bodyTimeout time.Duration, h http.Handler, srv *web.Server) error {
	hs := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: min(10*time.Second, bodyTimeout),
		ReadTimeout:       bodyTimeout,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	log.Info("parley serving", "listen", ln.Addr().String())
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	log.Info("parley shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	// http.Server.Shutdown stops accepting and waits for ordinary requests, but not
	// for hijacked WebSocket connections: the web server closes those itself.
	herr := make(chan error, 1)
	go func() { herr <- hs.Shutdown(sctx) }()
	werr := srv.Shutdown(sctx)
	if err := errors.Join(<-herr, werr); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Warn("shutdown incomplete", "err", err)
	}
	log.Info("parley stopped")
	return nil
}

// loopback reports whether addr listens only on this machine (127.0.0.0/8, ::1, localhost).
func loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
