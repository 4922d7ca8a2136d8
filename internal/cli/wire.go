package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"parley/internal/atomicfile"
	"parley/internal/chat"
	"parley/internal/fileblob"
	"parley/internal/membus"
	"parley/internal/metrics"
	"parley/internal/outbox"
	"parley/internal/sqlstore"
	"parley/internal/transcript"
)

// parts holds the backends the configuration selected, and closes them in reverse
// order of opening.
type parts struct {
	cfg      Config
	log      *slog.Logger
	sessions chat.SessionStore
	messages chat.MessageStore
	broker   chat.Broker
	presence chat.Presence
	archive  chat.Archive
	mailer   chat.Mailer
	exporter *transcript.Exporter
	registry *prometheus.Registry // what /metrics serves
	metrics  *metrics.Metrics

	closers []func() error
}

// onClose registers fn to run at close, before everything registered earlier.
func (p *parts) onClose(fn func() error) { p.closers = append(p.closers, fn) }

// Close closes every part, newest first, and joins their errors.
func (p *parts) Close() error {
	var errs []error
	for i := len(p.closers) - 1; i >= 0; i-- {
		errs = append(errs, p.closers[i]())
	}
	p.closers = nil
	return errors.Join(errs...)
}

// openParts opens the stores, fan-out, archive and mailer that c selects, and the
// export/purge jobs over them. Each part keeps its embedded default when its variable
// is unset. On error everything opened so far is closed.
func openParts(ctx context.Context, c Config, log *slog.Logger) (_ *parts, err error) {
	p := &parts{cfg: c, log: log, registry: prometheus.NewRegistry()}
	p.metrics = metrics.New(p.registry)
	defer func() {
		if err != nil {
			_ = p.Close()
		}
	}()
	if err := os.MkdirAll(c.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("data folder: %w", err)
	}
	if err := p.openStores(ctx); err != nil {
		return nil, err
	}
	if err := p.openFanOut(ctx); err != nil {
		return nil, err
	}
	if err := p.openArchive(ctx); err != nil {
		return nil, err
	}
	if err := p.openMailer(ctx); err != nil {
		return nil, err
	}
	p.removeStaleTemps()
	p.exporter, err = transcript.NewExporter(transcript.Options{
		Sessions:  p.sessions,
		Messages:  p.messages,
		Archive:   p.archive,
		Mailer:    p.mailer,
		Broker:    p.broker,
		People:    people(p.sessions),
		PublicURL: c.PublicURL,
		CSVDir:    c.CSVDir,
		Logger:    log,
		AfterStep: faultHook(c.FaultAfterStep),
	})
	return p, err
}

// people returns the store of people's time zones: every SQL session store keeps
// them; nil (times in UTC) otherwise.
func people(sessions chat.SessionStore) chat.PeopleStore {
	ps, _ := sessions.(chat.PeopleStore)
	return ps
}

// removeStaleTemps deletes the temp files that a process killed mid-write left in the
// local archive and in CSV_FILES (atomicfile.RemoveStale). A failure is logged: the
// leftovers waste space but harm nothing.
func (p *parts) removeStaleTemps() {
	dirs := []string{p.cfg.CSVDir}
	if a, ok := p.archive.(*fileblob.Archive); ok {
		dirs = append(dirs, a.Dir())
	}
	for _, dir := range dirs {
		n, err := atomicfile.RemoveStale(dir, time.Now())
		if err != nil {
			p.log.Warn("cannot remove stale temp files", "dir", dir, "err", err)
		}
		if n > 0 {
			p.log.Info("removed temp files left by an interrupted write", "dir", dir, "files", n)
		}
	}
}

// faultHook returns the crash-test hook for PARLEY_FAULT_AFTER_STEP ("" means none).
func faultHook(step string) func(string) {
	if step == "" {
		return nil
	}
	return transcript.KillAfter(step)
}

// usesDynamo reports whether messages go to DynamoDB.
func (c Config) usesDynamo() bool { return c.DynamoTable != "" || c.DynamoEndpoint != "" }

// usesSQLite reports whether any part keeps its embedded SQLite default.
func (c Config) usesSQLite() bool {
	return c.MySQLDSN == "" || (!c.usesDynamo() && !c.MySQLMessages)
}

// sqlitePath is the embedded database file.
func (c Config) sqlitePath() string { return filepath.Join(c.DataDir, "parley.db") }

func (p *parts) openStores(ctx context.Context) error {
	var embedded *sqlstore.DB
	openEmbedded := func() (*sqlstore.DB, error) {
		if embedded != nil {
			return embedded, nil
		}
		db, err := sqlstore.OpenSQLite(ctx, p.cfg.sqlitePath(), p.log)
		if err != nil {
			return nil, fmt.Errorf("embedded database %s: %w", p.cfg.sqlitePath(), err)
		}
		embedded = db
		db.SetMetrics(p.metrics)
		p.onClose(db.Close)
		return db, nil
	}
	sessions, err := p.openSessionStore(ctx, openEmbedded)
	if err != nil {
		return err
	}
	p.sessions = sessions
	messages, err := p.openMessageStore(ctx, sessions, openEmbedded)
	if err != nil {
		return err
	}
	p.messages = messages
	return nil
}

func (p *parts) openSessionStore(ctx context.Context, embedded func() (*sqlstore.DB, error)) (chat.SessionStore, error) {
	if p.cfg.MySQLDSN == "" {
		p.log.Info("backend", "part", "sessions", "uses", "sqlite", "path", p.cfg.sqlitePath())
		return embedded()
	}
	db, err := sqlstore.OpenMySQL(ctx, p.cfg.MySQLDSN, p.log)
	if err != nil {
		return nil, fmt.Errorf("MariaDB/MySQL (PARLEY_MYSQL_DSN %s): %w", maskDSN(p.cfg.MySQLDSN), err)
	}
	db.SetMetrics(p.metrics)
	p.onClose(db.Close)
	p.log.Info("backend", "part", "sessions", "uses", "mysql", "dsn", maskDSN(p.cfg.MySQLDSN))
	return db, nil
}

func (p *parts) openMessageStore(ctx context.Context, sessions chat.SessionStore, embedded func() (*sqlstore.DB, error)) (chat.MessageStore, error) {
	switch {
	case p.cfg.usesDynamo():
		return p.openDynamo(ctx)
	case p.cfg.MySQLDSN != "" && p.cfg.MySQLMessages:
		p.log.Info("backend", "part", "messages", "uses", "mysql")
		return sessions.(*sqlstore.DB), nil
	}
	p.log.Info("backend", "part", "messages", "uses", "sqlite", "path", p.cfg.sqlitePath())
	if p.cfg.usesRedis() {
		p.log.Warn("messages are kept in this replica's own SQLite file: every person of a room must reach this same replica; " +
			"set PARLEY_MYSQL_MESSAGES=true or a DynamoDB table if rooms may be split across replicas (docs/DEPLOY.md)")
	}
	return embedded()
}

func (p *parts) openFanOut(ctx context.Context) error {
	if p.cfg.usesRedis() {
		return p.openRedisFanOut(ctx)
	}
	bus := membus.New()
	p.onClose(bus.Close)
	p.broker, p.presence = bus, membus.NewPresence()
	p.log.Info("backend", "part", "fan-out", "uses", "in-process")
	return nil
}

func (p *parts) openArchive(ctx context.Context) error {
	if p.cfg.S3Bucket != "" {
		return p.openS3(ctx)
	}
	dir := filepath.Join(p.cfg.DataDir, "archive")
	a, err := fileblob.Open(dir)
	if err != nil {
		return fmt.Errorf("local archive %s: %w", dir, err)
	}
	p.archive = a
	p.log.Info("backend", "part", "archive", "uses", "local folder", "path", dir)
	return nil
}

func (p *parts) openMailer(ctx context.Context) error {
	if p.cfg.SMTPURL != "" {
		return p.openSMTP(ctx)
	}
	ob, err := outbox.New(outbox.Options{Dir: p.outboxDir(), From: p.cfg.MailFrom, Logger: p.log})
	if err != nil {
		return fmt.Errorf("mail outbox %s: %w", p.outboxDir(), err)
	}
	p.mailer = ob
	p.log.Info("backend", "part", "mail", "uses", "local outbox", "path", p.outboxDir())
	return nil
}

func (p *parts) outboxDir() string { return filepath.Join(p.cfg.DataDir, "outbox") }

// location is the purge schedule's time zone (validated with the config).
func (c Config) location() *time.Location {
	loc, err := time.LoadLocation(c.TZ)
	if err != nil {
		return time.UTC
	}
	return loc
}
