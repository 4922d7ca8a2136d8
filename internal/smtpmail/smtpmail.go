// Package smtpmail sends Parley's email (the transcript link at the end of a chat)
// through an SMTP server. It implements
// chat.Mailer with github.com/wneessen/go-mail (pinned at v0.8.1: v0.8.2 needs a newer
// Go), which builds every header from typed fields, so no subject or address can inject
// a header.
//
// A failure tells the caller whether retrying can help: the server's 5xx answers
// (address refused, message rejected) come back as chat.EPermanent and are recorded for
// that recipient; 4xx answers, network and TLS failures come back as plain errors and
// the end-of-chat job retries them with backoff.
package smtpmail

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	netmail "net/mail"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/wneessen/go-mail"

	"parley/internal/chat"
)

var _ chat.Mailer = (*Mailer)(nil)

// TLSMode says how the connection to the SMTP server is protected.
type TLSMode string

// The modes of ParseURL's tls parameter. STARTTLS is the default because it is what
// submission servers (port 587) expect; "none" exists for local capture servers such
// as Mailpit and must not be used across a network.
const (
	TLSStartTLS TLSMode = "starttls" // plain connection upgraded with STARTTLS, which is required
	TLSImplicit TLSMode = "tls"      // TLS from the first byte (SMTPS, port 465)
	TLSNone     TLSMode = "none"     // no TLS at all
)

// DefaultTimeout bounds each SMTP connection's dial and commands.
const DefaultTimeout = 30 * time.Second

// Options configure a Mailer. Password is a secret: String masks it and nothing here
// logs it.
type Options struct {
	Host     string
	Port     int // default from TLS: 587 for starttls, 465 for tls, 25 for none
	Username string
	Password string
	TLS      TLSMode // default TLSStartTLS
	From     string  // sender, "noreply@example.com" or "Parley <noreply@example.com>"
	ReplyTo  string  // optional Reply-To address
	HeloName string  // optional name sent in EHLO; default the machine's host name
	Timeout  time.Duration
	Logger   *slog.Logger // nil discards
}

// ParseURL reads PARLEY_SMTP_URL: smtp://[user[:pass]@]host[:port][?tls=starttls|tls|none].
// The scheme smtps means tls=tls. User and password are URL-decoded. From, ReplyTo and
// the rest are set by the caller (PARLEY_MAIL_FROM).
func ParseURL(raw string) (Options, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return Options{}, chat.Errorf(chat.EInvalid, "SMTP URL is not a URL (smtp://user:pass@host:587?tls=starttls)")
	}
	var o Options
	switch u.Scheme {
	case "smtp":
		o.TLS = TLSStartTLS
	case "smtps":
		o.TLS = TLSImplicit
	default:
		return Options{}, chat.Errorf(chat.EInvalid, "SMTP URL scheme %q: want smtp or smtps", u.Scheme)
	}
	o.Host = u.Hostname()
	if u.User != nil {
		o.Username = u.User.Username()
		o.Password, _ = u.User.Password()
	}
	if p := u.Port(); p != "" {
		if o.Port, err = strconv.Atoi(p); err != nil || o.Port < 1 || o.Port > 65535 {
			return Options{}, chat.Errorf(chat.EInvalid, "SMTP URL port %q is not a port number", p)
		}
	}
	if err := o.parseQuery(u.Query()); err != nil {
		return Options{}, err
	}
	return o, o.check()
}

// parseQuery reads the URL's parameters; an unknown one is an error, so a typo does not
// silently fall back to a default (tls=nnone would otherwise mean STARTTLS).
func (o *Options) parseQuery(q url.Values) error {
	for name, values := range q {
		v := values[len(values)-1]
		switch name {
		case "tls":
			o.TLS = TLSMode(strings.ToLower(v))
		case "timeout":
			d, err := time.ParseDuration(v)
			if err != nil || d <= 0 {
				return chat.Errorf(chat.EInvalid, "SMTP URL timeout %q is not a duration such as 30s", v)
			}
			o.Timeout = d
		case "helo":
			o.HeloName = v
		default:
			return chat.Errorf(chat.EInvalid, "SMTP URL parameter %q is unknown (known: tls, timeout, helo)", name)
		}
	}
	return nil
}

// check validates the connection part of the options and fills in defaults.
func (o *Options) check() error {
	if o.Host == "" {
		return chat.Errorf(chat.EInvalid, "SMTP host is missing")
	}
	if o.TLS == "" {
		o.TLS = TLSStartTLS
	}
	switch o.TLS {
	case TLSStartTLS:
		o.Port = orDefault(o.Port, 587)
	case TLSImplicit:
		o.Port = orDefault(o.Port, 465)
	case TLSNone:
		o.Port = orDefault(o.Port, 25)
	default:
		return chat.Errorf(chat.EInvalid, "SMTP tls=%q: want starttls, tls or none", o.TLS)
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	return nil
}

func orDefault(v, def int) int {
	if v == 0 {
		return def
	}
	return v
}

// String shows the options as a URL with the password masked, for start-up logs.
func (o Options) String() string {
	u := url.URL{Scheme: "smtp", Host: o.Host + ":" + strconv.Itoa(o.Port), RawQuery: "tls=" + string(o.TLS)}
	switch {
	case o.Username != "" && o.Password != "":
		u.User = url.UserPassword(o.Username, "xxxxx")
	case o.Username != "":
		u.User = url.User(o.Username)
	}
	s := u.String()
	if o.From != "" {
		s += " from " + o.From
	}
	return s
}

// LogValue makes slog print the masked form too.
func (o Options) LogValue() slog.Value { return slog.StringValue(o.String()) }

// Mailer sends each email over a fresh SMTP connection: Parley sends two emails per
// finished chat, so a pool would only add connections for servers to time out.
type Mailer struct {
	opts Options
	log  *slog.Logger
}

// New checks the options (host, TLS mode, a valid From and Reply-To) and returns a
// Mailer. It does not contact the server.
func New(opts Options) (*Mailer, error) {
	if err := opts.check(); err != nil {
		return nil, err
	}
	if opts.From == "" {
		return nil, chat.Errorf(chat.EInvalid, "the mail sender (PARLEY_MAIL_FROM) is missing")
	}
	for _, addr := range []string{opts.From, opts.ReplyTo} {
		if _, err := netmail.ParseAddress(addr); addr != "" && err != nil {
			return nil, chat.Errorf(chat.EInvalid, "mail address %q is not valid: %v", addr, err)
		}
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	return &Mailer{opts: opts, log: opts.Logger}, nil
}

// Close releases nothing (connections last one Send); it exists so every component
// shuts down the same way.
func (m *Mailer) Close() error { return nil }

// Send delivers e to the SMTP server. It returns nil once the server accepted the
// message, chat.EPermanent when the server refused it for good (5xx) or the recipient
// address is unusable, and a plain (temporary) error otherwise.
func (m *Mailer) Send(ctx context.Context, e chat.Email) error {
	msg, err := m.build(e)
	if err != nil {
		return err
	}
	var conn dialed
	client, err := m.client(&conn)
	if err != nil {
		return err
	}
	start := time.Now()
	if err := client.DialAndSendWithContext(ctx, msg); err != nil {
		conn.close()
		return m.classify(err)
	}
	m.log.Debug("smtp: mail accepted", "server", m.opts.Host, "elapsed", time.Since(start))
	return nil
}

// build makes the message: typed headers, a plain-text body with an HTML alternative,
// a fresh Message-ID and Auto-Submitted so auto-responders do not answer it.
func (m *Mailer) build(e chat.Email) (*mail.Msg, error) {
	msg := mail.NewMsg()
	if err := msg.From(m.opts.From); err != nil {
		return nil, chat.Wrap(chat.EInternal, err, "mail sender %q", m.opts.From)
	}
	if err := msg.To(e.To); err != nil {
		return nil, chat.Wrap(chat.EPermanent, err, "recipient address is not usable")
	}
	if m.opts.ReplyTo != "" {
		if err := msg.ReplyTo(m.opts.ReplyTo); err != nil {
			return nil, chat.Wrap(chat.EInternal, err, "mail Reply-To %q", m.opts.ReplyTo)
		}
	}
	msg.Subject(oneLine(e.Subject))
	msg.SetMessageID()
	msg.SetDate()
	msg.SetGenHeader(mail.Header("Auto-Submitted"), "auto-generated")
	msg.SetBodyString(mail.TypeTextPlain, e.Text)
	if e.HTML != "" {
		msg.AddAlternativeString(mail.TypeTextHTML, e.HTML)
	}
	return msg, nil
}

// oneLine turns line breaks into spaces: a subject is one line. go-mail would encode
// them anyway; this keeps the subject readable.
func oneLine(s string) string {
	return strings.NewReplacer("\r\n", " ", "\r", " ", "\n", " ").Replace(s)
}

// dialed keeps the plain TCP connection go-mail dials for one send. go-mail v0.8.1
// does not close it when the greeting, STARTTLS or authentication fails (its
// DialToSMTPClientWithContext returns the error and drops the connection), so Send
// closes it after any failure; closing one go-mail already closed does nothing.
type dialed struct {
	mu   sync.Mutex
	conn net.Conn
}

// dial is go-mail's own default dial (a zero net.Dialer), remembering the connection.
func (d *dialed) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	var nd net.Dialer
	c, err := nd.DialContext(ctx, network, addr)
	if err == nil {
		d.mu.Lock()
		d.conn = c
		d.mu.Unlock()
	}
	return c, err
}

func (d *dialed) close() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.conn != nil {
		_ = d.conn.Close()
	}
}

// client makes a go-mail client for one connection, with the TLS policy and
// authentication of the options (authentication only when a username is set). Plain
// and STARTTLS connections are dialed through conn; implicit TLS is left to go-mail's
// own TLS dialer, which knows the connection is encrypted.
func (m *Mailer) client(conn *dialed) (*mail.Client, error) {
	o := m.opts
	opts := []mail.Option{mail.WithPort(o.Port), mail.WithTimeout(o.Timeout)}
	switch o.TLS {
	case TLSNone:
		opts = append(opts, mail.WithTLSPolicy(mail.NoTLS), mail.WithDialContextFunc(conn.dial))
	case TLSImplicit:
		opts = append(opts, mail.WithSSL())
	default:
		opts = append(opts, mail.WithTLSPolicy(mail.TLSMandatory), mail.WithDialContextFunc(conn.dial))
	}
	if o.HeloName != "" {
		opts = append(opts, mail.WithHELO(o.HeloName))
	}
	if o.Username != "" {
		opts = append(opts, mail.WithSMTPAuth(mail.SMTPAuthAutoDiscover),
			mail.WithUsername(o.Username), mail.WithPassword(o.Password))
	}
	c, err := mail.NewClient(o.Host, opts...)
	if err != nil {
		return nil, chat.Wrap(chat.EInternal, err, "configuring SMTP client for %s", o.Host)
	}
	return c, nil
}

// classify maps a go-mail failure to the Mailer contract: a 5xx answer to the
// envelope or the message is permanent; everything else (4xx, connection, TLS,
// authentication: likely fixed by the server or an operator) is temporary.
func (m *Mailer) classify(err error) error {
	var se *mail.SendError
	if errors.As(err, &se) && se.ErrorCode() >= 500 && se.ErrorCode() < 600 {
		m.log.Debug("smtp: mail refused for good", "server", m.opts.Host, "code", se.ErrorCode(), "reason", se.Reason.String())
		return chat.Wrap(chat.EPermanent, err, "the mail server refused the message (%d)", se.ErrorCode())
	}
	m.log.Debug("smtp: sending failed, will retry", "server", m.opts.Host, "err", err)
	return fmt.Errorf("smtp: sending via %s:%d: %w", m.opts.Host, m.opts.Port, err)
}
