package cli

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"time"

	"parley/internal/chat"
	"parley/internal/hub"
	"parley/internal/redisbus"
	"parley/internal/redisconn"
	"parley/internal/s3blob"
	"parley/internal/web"
)

// Config is every setting of Parley, read from PARLEY_* environment variables and then
// from flags (a flag wins). The names of the contract variables are fixed: operators and
// outside tooling rely on them. Fields tagged secret are masked when printed.
type Config struct {
	Addr        string   `env:"PARLEY_ADDR" flag:"addr" help:"listen address"`
	PublicURL   string   `env:"PARLEY_PUBLIC_URL" flag:"public-url" help:"URL people reach (links in emails, Origin check); default http:// + addr"`
	Origins     []string `env:"PARLEY_ALLOWED_ORIGINS" flag:"allowed-origins" help:"extra allowed WebSocket Origins, comma-separated"`
	DataDir     string   `env:"PARLEY_DATA_DIR" flag:"data-dir" help:"folder for the embedded database, outbox, archive and CSV_FILES"`
	CSVDir      string   `env:"PARLEY_CSV_FILES" flag:"csv-files" help:"local copy of every transcript; default DATA_DIR/CSV_FILES"`
	Auth        string   `env:"PARLEY_AUTH" flag:"auth" help:"identity: email-link (sign in by emailed link) or trust (the typed email is believed)"`
	AdminEmails []string `env:"PARLEY_ADMIN_EMAILS" flag:"admin-emails" help:"emails allowed to search anyone's history, comma-separated"`
	Dev         string   `env:"PARLEY_DEV" flag:"dev" help:"development mode (serves /dev/mail): auto, true or false; auto = true when mail goes to the local outbox"`
	CookieKey   string   `env:"PARLEY_COOKIE_KEY" flag:"cookie-key" secret:"true" help:"key that signs cookies (hex, 32+ bytes); default: generated once and kept in DATA_DIR"`
	Proxies     []string `env:"PARLEY_TRUSTED_PROXIES" flag:"trusted-proxies" help:"IPs/CIDRs of reverse proxies whose X-Forwarded-For names the client (for per-client limits), comma-separated"`

	SignInsPerEmail int    `env:"PARLEY_SIGNIN_PER_EMAIL" flag:"signin-per-email" help:"sign-in emails per address per hour (negative: no limit)"`
	SignInsPerIP    int    `env:"PARLEY_SIGNIN_PER_IP" flag:"signin-per-ip" help:"sign-in emails per client IP per hour (negative: no limit)"`
	JoinsPerMinute  int    `env:"PARLEY_JOIN_RATE" flag:"join-rate" help:"join form posts per client IP per minute, email-link sign-in only (negative: no limit)"`
	ConnsPerPerson  int    `env:"PARLEY_CONNS_PER_PERSON" flag:"conns-per-person" help:"open WebSockets per person on one replica (negative: no limit)"`
	MaxConns        int    `env:"PARLEY_MAX_CONNS" flag:"max-conns" help:"open connections (WebSockets included) one replica keeps; beyond it a new one gets 503 (negative: no limit)"`
	DebugAddr       string `env:"PARLEY_DEBUG_ADDR" flag:"debug-addr" help:"serve Go's pprof profiles on this loopback address (off when empty)"`
	LogLevel        string `env:"PARLEY_LOG_LEVEL" flag:"log-level" help:"debug, info, warn or error"`
	LogFormat       string `env:"PARLEY_LOG_FORMAT" flag:"log-format" help:"text or json"`

	MaxText       int           `env:"PARLEY_MAX_MESSAGE_CHARS" flag:"max-message-chars" help:"longest message text, in characters"`
	ReadLimit     int64         `env:"PARLEY_FRAME_LIMIT" flag:"frame-limit" help:"largest WebSocket frame read, in bytes"`
	RatePerSec    float64       `env:"PARLEY_RATE" flag:"rate" help:"messages per second per connection"`
	RateBurst     int           `env:"PARLEY_RATE_BURST" flag:"rate-burst" help:"message burst per connection"`
	PingInterval  time.Duration `env:"PARLEY_PING_INTERVAL" flag:"ping-interval" help:"WebSocket ping period"`
	IdleTimeout   time.Duration `env:"PARLEY_IDLE_TIMEOUT" flag:"idle-timeout" help:"close a WebSocket silent for this long"`
	BodyTimeout   time.Duration `env:"PARLEY_BODY_TIMEOUT" flag:"body-timeout" help:"longest a request, headers and body, may take to arrive; a slower one is cut (an open WebSocket is exempt)"`
	SendQueue     int           `env:"PARLEY_SEND_QUEUE" flag:"send-queue" help:"frames queued per connection before a slow client is closed"`
	PresenceCheck time.Duration `env:"PARLEY_PRESENCE_CHECK" flag:"presence-check" help:"how often peers' presence is re-read, so a peer whose replica died is shown offline"`
	PresenceTTL   time.Duration `env:"PARLEY_PRESENCE_TTL" flag:"presence-ttl" help:"how long a dead replica's presence records count (Redis fan-out)"`

	MySQLDSN         string        `env:"PARLEY_MYSQL_DSN" flag:"mysql-dsn" secret:"true" help:"MariaDB/MySQL for chat sessions (go-sql-driver DSN)"`
	MySQLMessages    bool          `env:"PARLEY_MYSQL_MESSAGES" flag:"mysql-messages" help:"keep messages in MariaDB too (when no DynamoDB table is set)"`
	DynamoTable      string        `env:"PARLEY_DYNAMODB_TABLE" flag:"dynamodb-table" help:"DynamoDB table for messages (default message when an endpoint or region is set)"`
	DynamoEndpoint   string        `env:"PARLEY_DYNAMODB_ENDPOINT" flag:"dynamodb-endpoint" help:"DynamoDB endpoint override (a local stand-in)"`
	AWSRegion        string        `env:"PARLEY_AWS_REGION" flag:"aws-region" help:"AWS region"`
	S3Bucket         string        `env:"PARLEY_S3_BUCKET" flag:"s3-bucket" help:"S3 bucket for transcripts"`
	S3Prefix         string        `env:"PARLEY_S3_PREFIX" flag:"s3-prefix" help:"key prefix in the bucket"`
	S3Endpoint       string        `env:"PARLEY_S3_ENDPOINT" flag:"s3-endpoint" help:"S3 endpoint override (S3-compatible store)"`
	S3PublicEndpoint string        `env:"PARLEY_S3_PUBLIC_ENDPOINT" flag:"s3-public-endpoint" help:"S3 endpoint browsers reach, used to sign download links"`
	S3PathStyle      bool          `env:"PARLEY_S3_PATH_STYLE" flag:"s3-path-style" help:"path-style S3 addressing"`
	S3PutTimeout     time.Duration `env:"PARLEY_S3_PUT_TIMEOUT" flag:"s3-put-timeout" help:"longest one transcript upload to S3 (or reading one back) may take before the export fails and is retried"`
	S3CallTimeout    time.Duration `env:"PARLEY_S3_CALL_TIMEOUT" flag:"s3-call-timeout" help:"longest any other S3 call (HeadObject, HeadBucket, presigning) may take"`
	RedisURL         string        `env:"PARLEY_REDIS_URL" flag:"redis-url" secret:"true" help:"Redis for fan-out between replicas and the job queue"`
	RedisClusterURL  string        `env:"PARLEY_REDIS_CLUSTER_URL" flag:"redis-cluster-url" secret:"true" help:"a Redis Cluster instead, redis://host1:p1?addr=host2:p2&addr=host3:p3 (sharded pub/sub)"`
	RedisPrefix      string        `env:"PARLEY_REDIS_PREFIX" flag:"redis-prefix" help:"names Parley's channels, keys and job queue in Redis, so deployments can share one Redis"`
	SMTPURL          string        `env:"PARLEY_SMTP_URL" flag:"smtp-url" secret:"true" help:"SMTP server, e.g. smtp://user:pass@host:587?tls=starttls"`
	MailFrom         string        `env:"PARLEY_MAIL_FROM" flag:"mail-from" help:"sender address of Parley's emails"`
	MailReplyTo      string        `env:"PARLEY_MAIL_REPLY_TO" flag:"mail-reply-to" help:"Reply-To address of Parley's emails"`
	PurgeSchedule    string        `env:"PARLEY_PURGE_SCHEDULE" flag:"purge-schedule" help:"cron spec of the nightly purge"`
	TZ               string        `env:"PARLEY_TZ" flag:"tz" help:"time zone of the purge schedule"`
	SweepInterval    time.Duration `env:"PARLEY_SWEEP_INTERVAL" flag:"sweep-interval" help:"how often ended chats whose export is unfinished are queued again"`

	// FaultAfterStep makes the export job exit the process right after the named step;
	// crash tests use it. Never set it in production.
	FaultAfterStep string `env:"PARLEY_FAULT_AFTER_STEP" flag:"" help:""`
}

// DefaultBodyTimeout is how long a request, headers and body, may take to arrive. Every
// form Parley takes is a few hundred bytes, so a body still arriving after 30 s is a
// client holding the connection, not a slow network.
const DefaultBodyTimeout = 30 * time.Second

// defaults returns the configuration used when nothing is set.
func defaults() Config {
	return Config{
		Addr:          "127.0.0.1:8080",
		DataDir:       "./parley-data",
		Auth:          web.AuthEmailLink,
		Dev:           "auto",
		LogLevel:      "info",
		LogFormat:     "text",
		MaxText:       chat.DefaultMaxText,
		ReadLimit:     web.DefaultReadLimit,
		RatePerSec:    web.DefaultRatePerSec,
		RateBurst:     web.DefaultRateBurst,
		PingInterval:  web.DefaultPingInterval,
		IdleTimeout:   web.DefaultIdleTimeout,
		SendQueue:     web.DefaultSendQueue,
		PresenceCheck: hub.DefaultPresenceCheck,
		PresenceTTL:   redisbus.DefaultPresenceTTL,
		AWSRegion:     "us-east-1",
		S3PutTimeout:  s3blob.DefaultPutTimeout,
		S3CallTimeout: s3blob.DefaultCallTimeout,
		MailFrom:      "Parley <parley@localhost>",
		RedisPrefix:   "parley",
		PurgeSchedule: "59 23 * * *",
		TZ:            "UTC",
		SweepInterval: 2 * time.Minute,

		SignInsPerEmail: web.DefaultSignInsPerEmail,
		SignInsPerIP:    web.DefaultSignInsPerIP,
		JoinsPerMinute:  web.DefaultJoinsPerMinute,
		ConnsPerPerson:  web.DefaultConnsPerPerson,
		MaxConns:        DefaultMaxConns,
		BodyTimeout:     DefaultBodyTimeout,
	}
}

// loadConfig reads the environment, then parses args as flags over it, and validates.
// extra, when given, registers the subcommand's own flags on the same flag set.
func loadConfig(name string, args []string, getenv func(string) string, out io.Writer, extra ...func(*flag.FlagSet)) (Config, []string, error) {
	c := defaults()
	if err := c.fromEnv(getenv); err != nil {
		return c, nil, err
	}
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	c.register(fs)
	for _, register := range extra {
		register(fs)
	}
	if out != nil {
		fs.SetOutput(out)
	}
	if err := fs.Parse(args); err != nil {
		return c, nil, err
	}
	return c, fs.Args(), c.finish()
}

// fromEnv sets every field whose variable is set.
func (c *Config) fromEnv(getenv func(string) string) error {
	v := reflect.ValueOf(c).Elem()
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		name := t.Field(i).Tag.Get("env")
		s := getenv(name)
		if name == "" || s == "" {
			continue
		}
		if err := setField(v.Field(i), s); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
	}
	return nil
}

// register adds one flag per field that has a flag name.
func (c *Config) register(fs *flag.FlagSet) {
	v := reflect.ValueOf(c).Elem()
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if name := f.Tag.Get("flag"); name != "" {
			fs.Var(fieldValue{v.Field(i)}, name, f.Tag.Get("help")+" ("+f.Tag.Get("env")+")")
		}
	}
}

// fieldValue adapts a Config field to flag.Value.
type fieldValue struct{ v reflect.Value }

func (f fieldValue) String() string {
	if !f.v.IsValid() {
		return ""
	}
	return fmt.Sprint(f.v.Interface())
}
func (f fieldValue) Set(s string) error { return setField(f.v, s) }
func (f fieldValue) IsBoolFlag() bool   { return f.v.IsValid() && f.v.Kind() == reflect.Bool }

func setField(v reflect.Value, s string) error {
	switch v.Interface().(type) {
	case string:
		v.SetString(s)
	case []string:
		var list []string
		for _, part := range strings.Split(s, ",") {
			if part = strings.TrimSpace(part); part != "" {
				list = append(list, part)
			}
		}
		v.Set(reflect.ValueOf(list))
	case bool:
		b, err := strconv.ParseBool(s)
		if err != nil {
			return fmt.Errorf("want true or false, got %q", s)
		}
		v.SetBool(b)
	case int, int64:
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return fmt.Errorf("want a whole number, got %q", s)
		}
		v.SetInt(n)
	case float64:
		n, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return fmt.Errorf("want a number, got %q", s)
		}
		v.SetFloat(n)
	case time.Duration:
		d, err := time.ParseDuration(s)
		if err != nil {
			return fmt.Errorf("want a duration such as 30s, got %q", s)
		}
		v.SetInt(int64(d))
	default:
		return fmt.Errorf("unsupported setting type %s", v.Type())
	}
	return nil
}

// finish fills derived defaults and validates.
func (c *Config) finish() error {
	var errs []error
	if c.PublicURL == "" {
		c.PublicURL = "http://" + c.Addr
	}
	c.PublicURL = strings.TrimRight(c.PublicURL, "/")
	if u, err := url.Parse(c.PublicURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		errs = append(errs, fmt.Errorf("PARLEY_PUBLIC_URL %q: want http(s)://host[:port]", c.PublicURL))
	}
	if c.CSVDir == "" {
		c.CSVDir = filepath.Join(c.DataDir, "CSV_FILES")
	}
	switch c.Auth {
	case "trust", "email-link":
	default:
		errs = append(errs, fmt.Errorf("PARLEY_AUTH %q: want email-link or trust", c.Auth))
	}
	switch c.Dev {
	case "auto", "true", "false":
	default:
		errs = append(errs, fmt.Errorf("PARLEY_DEV %q: want auto, true or false", c.Dev))
	}
	for i, e := range c.AdminEmails {
		n, err := chat.NormalizeEmail(e)
		if err != nil {
			errs = append(errs, fmt.Errorf("PARLEY_ADMIN_EMAILS: %q is not an email address", e))
		}
		c.AdminEmails[i] = n
	}
	if c.MaxText < 1 || c.ReadLimit < 512 || c.RatePerSec <= 0 || c.RateBurst < 1 || c.SendQueue < 1 {
		errs = append(errs, errors.New("limits must be positive (max message chars, frame limit ≥ 512, rate, burst, send queue)"))
	}
	if err := web.ValidateTrustedProxies(c.Proxies); err != nil {
		errs = append(errs, fmt.Errorf("PARLEY_TRUSTED_PROXIES: %s", chat.ErrorMessage(err)))
	}
	if c.MaxConns == 0 {
		errs = append(errs, errors.New("PARLEY_MAX_CONNS 0: want a positive number of connections, or -1 for no limit"))
	}
	if c.BodyTimeout <= 0 {
		errs = append(errs, fmt.Errorf("PARLEY_BODY_TIMEOUT %s: want a positive duration such as 30s", c.BodyTimeout))
	}
	if c.S3PutTimeout <= 0 || c.S3CallTimeout <= 0 {
		errs = append(errs, fmt.Errorf("PARLEY_S3_PUT_TIMEOUT %s, PARLEY_S3_CALL_TIMEOUT %s: want positive durations such as 60s and 10s", c.S3PutTimeout, c.S3CallTimeout))
	}
	if c.RedisURL != "" && c.RedisClusterURL != "" {
		errs = append(errs, errors.New("set PARLEY_REDIS_URL or PARLEY_REDIS_CLUSTER_URL, not both"))
	}
	if c.RedisPrefix == "" || strings.ContainsAny(c.RedisPrefix, " :{}*?[]") {
		errs = append(errs, fmt.Errorf("PARLEY_REDIS_PREFIX %q: want a plain name such as parley", c.RedisPrefix))
	}
	if _, err := time.LoadLocation(c.TZ); err != nil {
		errs = append(errs, fmt.Errorf("PARLEY_TZ %q: %v", c.TZ, err))
	}
	return errors.Join(errs...)
}

// usesRedis reports whether replicas share Redis (one server or a cluster).
func (c *Config) usesRedis() bool { return c.RedisURL != "" || c.RedisClusterURL != "" }

// redisTarget is where Redis is.
func (c *Config) redisTarget() redisconn.Target {
	if c.RedisClusterURL != "" {
		return redisconn.Target{URL: c.RedisClusterURL, Cluster: true}
	}
	return redisconn.Target{URL: c.RedisURL}
}

// redisName names the Redis setting and its masked URL, for logs and errors.
func (c *Config) redisName() string {
	if c.RedisClusterURL != "" {
		return "PARLEY_REDIS_CLUSTER_URL " + maskURL(c.RedisClusterURL)
	}
	return "PARLEY_REDIS_URL " + maskURL(c.RedisURL)
}

// DevMode reports whether development conveniences (/dev/mail) are on.
func (c *Config) DevMode() bool {
	if c.Dev == "auto" {
		return c.SMTPURL == ""
	}
	return c.Dev == "true"
}

// Masked returns the configuration as "name=value" lines with secrets hidden, for logs.
func (c Config) Masked() []any {
	v := reflect.ValueOf(c)
	t := v.Type()
	var attrs []any
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		val := fmt.Sprint(v.Field(i).Interface())
		if f.Tag.Get("secret") == "true" && val != "" {
			val = "*****"
		}
		attrs = append(attrs, strings.ToLower(f.Name), val)
	}
	return attrs
}
