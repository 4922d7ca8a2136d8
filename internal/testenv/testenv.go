// Package testenv tells tests where the external backends of `make test` are
// (MariaDB, Redis, dynalite, MinIO, Mailpit, Chromium) and enforces the
// project's one rule for a missing backend: under CI=true the test fails,
// because a green CI run must mean every backend was exercised; elsewhere it
// skips loudly, so `go test ./...` on a bare laptop still runs everything else.
//
// The addresses come from the PARLEY_TEST_* variables that scripts/stack.sh
// writes to stack.env; `make test` loads that file before `go test`.
package testenv

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
)

// Names of the environment variables read here; stack.env sets all of them.
const (
	EnvMySQLDSN       = "PARLEY_TEST_MYSQL_DSN"
	EnvRedisURL       = "PARLEY_TEST_REDIS_URL"
	EnvRedisCluster   = "PARLEY_TEST_REDIS_CLUSTER_URL"
	EnvDynamoEndpoint = "PARLEY_TEST_DYNAMODB_ENDPOINT"
	EnvS3Endpoint     = "PARLEY_TEST_S3_ENDPOINT"
	EnvS3AccessKey    = "PARLEY_TEST_S3_ACCESS_KEY"
	EnvS3SecretKey    = "PARLEY_TEST_S3_SECRET_KEY"
	EnvS3Bucket       = "PARLEY_TEST_S3_BUCKET"
	EnvSMTPAddr       = "PARLEY_TEST_SMTP_ADDR"
	EnvMailpitURL     = "PARLEY_TEST_MAILPIT_URL"
	EnvChromium       = "PARLEY_TEST_CHROMIUM"
)

// DefaultS3Bucket is the bucket scripts/stack.sh creates, used when
// PARLEY_TEST_S3_BUCKET is unset.
const DefaultS3Bucket = "parley-transcripts"

// dialTimeout bounds the reachability probe: a backend that does not accept a
// TCP connection within it is treated as absent rather than slowing every test.
const dialTimeout = time.Second

// howToFix is appended to every skip or failure so the reader knows the cure.
const howToFix = "run `make test`, or `make stack && . ./stack.env` before `go test`"

// S3Env is what a test needs to reach the S3 stand-in (MinIO).
type S3Env struct {
	Endpoint  string // base URL, e.g. http://127.0.0.1:9100
	AccessKey string
	SecretKey string
	Bucket    string // created by scripts/stack.sh
}

// InCI reports whether this run is CI's (CI=true), where a missing backend is
// a failure instead of a skip.
func InCI() bool {
	ci, err := strconv.ParseBool(os.Getenv("CI"))
	return err == nil && ci
}

// MySQLDSN returns the go-sql-driver DSN of the test MariaDB server (no
// database selected: tests create and drop their own, see UniqueName).
func MySQLDSN(t testing.TB) string {
	t.Helper()
	dsn := need(t, EnvMySQLDSN, "MariaDB")
	cfg, err := mysql.ParseDSN(dsn)
	if err != nil {
		missing(t, "MariaDB", fmt.Sprintf("%s is not a valid DSN: %v", EnvMySQLDSN, err))
	}
	reachable(t, "MariaDB", EnvMySQLDSN, cfg.Net, cfg.Addr)
	return dsn
}

// RedisURL returns the redis:// URL of the test Redis server. Tests share it:
// use a unique key prefix (UniqueName) and delete what you wrote.
func RedisURL(t testing.TB) string {
	t.Helper()
	return needURL(t, EnvRedisURL, "Redis", "6379")
}

// RedisClusterURL returns the test Redis Cluster in go-redis's cluster URL form
// (redis://host1:p1?addr=host2:p2&...). Tests share it: use a unique key prefix.
func RedisClusterURL(t testing.TB) string {
	t.Helper()
	return needURL(t, EnvRedisCluster, "Redis Cluster", "6379")
}

// DynamoEndpoint returns the base URL of the DynamoDB stand-in (dynalite).
// It accepts any credentials and region.
func DynamoEndpoint(t testing.TB) string {
	t.Helper()
	return needURL(t, EnvDynamoEndpoint, "DynamoDB (dynalite)", "80")
}

// S3 returns the address and credentials of the S3 stand-in (MinIO), which
// checks SigV4 signatures like AWS does.
func S3(t testing.TB) S3Env {
	t.Helper()
	env := S3Env{
		Endpoint:  need(t, EnvS3Endpoint, "S3 (MinIO)"),
		AccessKey: need(t, EnvS3AccessKey, "S3 (MinIO)"),
		SecretKey: need(t, EnvS3SecretKey, "S3 (MinIO)"),
		Bucket:    os.Getenv(EnvS3Bucket),
	}
	if env.Bucket == "" {
		env.Bucket = DefaultS3Bucket
	}
	reachable(t, "S3 (MinIO)", EnvS3Endpoint, "tcp", hostPort(t, "S3 (MinIO)", EnvS3Endpoint, env.Endpoint, "80"))
	return env
}

// SMTPAddr returns host:port of the SMTP capture server (Mailpit). It speaks
// plain SMTP without TLS: use go-mail's mail.NoTLS policy.
func SMTPAddr(t testing.TB) string {
	t.Helper()
	addr := need(t, EnvSMTPAddr, "SMTP (Mailpit)")
	reachable(t, "SMTP (Mailpit)", EnvSMTPAddr, "tcp", addr)
	return addr
}

// MailpitURL returns the base URL of Mailpit's HTTP API (GET /api/v1/messages,
// /api/v1/search?query=…), where tests read the mail that arrived.
func MailpitURL(t testing.TB) string {
	t.Helper()
	return strings.TrimRight(needURL(t, EnvMailpitURL, "Mailpit API", "80"), "/")
}

// Chromium returns the path of a headless-capable Chromium: PARLEY_TEST_CHROMIUM
// when set, else the first of chromium, chromium-browser, google-chrome on PATH.
func Chromium(t testing.TB) string {
	t.Helper()
	if p := os.Getenv(EnvChromium); p != "" {
		if _, err := os.Stat(p); err != nil {
			missing(t, "Chromium", fmt.Sprintf("%s=%s: %v", EnvChromium, p, err))
		}
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	missing(t, "Chromium", "no chromium on PATH and "+EnvChromium+" is unset (`make test` installs Debian's chromium)")
	return ""
}

// UniqueName returns prefix + "_" + 12 random hex digits: a database name,
// key prefix or object prefix that no other test run (parallel or leftover)
// shares. Only [a-z0-9_] appear besides the prefix, so it is a valid MariaDB
// identifier when the prefix is.
func UniqueName(t testing.TB, prefix string) string {
	t.Helper()
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatalf("testenv: random name: %v", err)
	}
	return prefix + "_" + hex.EncodeToString(b[:])
}

// need returns the variable's value, or skips/fails the test when it is unset.
func need(t testing.TB, name, backend string) string {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		missing(t, backend, name+" is unset")
	}
	return v
}

// needURL returns the URL in the variable name, failing or skipping the test as
// missing does when it is unset or nothing answers at its host (defaultPort when the
// URL names none).
func needURL(t testing.TB, name, backend, defaultPort string) string {
	t.Helper()
	raw := need(t, name, backend)
	reachable(t, backend, name, "tcp", hostPort(t, backend, name, raw, defaultPort))
	return raw
}

// hostPort extracts host:port from a URL-valued variable, with a default port.
func hostPort(t testing.TB, backend, name, raw, defaultPort string) string {
	t.Helper()
	addr, err := urlHostPort(raw, defaultPort)
	if err != nil {
		missing(t, backend, fmt.Sprintf("%s=%q: %v", name, raw, err))
	}
	return addr
}

// urlHostPort is hostPort without the test: "http://h:1/x" → "h:1".
func urlHostPort(raw, defaultPort string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", err
	}
	if u.Hostname() == "" {
		return "", fmt.Errorf("no host in URL")
	}
	port := u.Port()
	if port == "" {
		port = defaultPort
		if u.Scheme == "https" {
			port = "443"
		}
	}
	addr := net.JoinHostPort(u.Hostname(), port)
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return "", err
	}
	return addr, nil
}

// reachable dials the backend once; an address that does not answer is
// treated like an unset variable.
func reachable(t testing.TB, backend, name, network, addr string) {
	t.Helper()
	if err := probe(network, addr); err != nil {
		missing(t, backend, fmt.Sprintf("%s points at %s, which does not answer: %v", name, addr, err))
	}
}

// probe opens and closes one connection within dialTimeout.
func probe(network, addr string) error {
	conn, err := net.DialTimeout(network, addr, dialTimeout)
	if err != nil {
		return err
	}
	return conn.Close()
}

// missing applies the rule: fail under CI, skip loudly elsewhere.
func missing(t testing.TB, backend, why string) {
	t.Helper()
	if InCI() {
		t.Fatalf("testenv: %s is required under CI=true but %s; %s", backend, why, howToFix)
	}
	t.Skipf("SKIP (backend missing): %s test not run because %s; %s", backend, why, howToFix)
}
